"""The daemon's most frequent netlink requests with a plain socket: a link by name or index and
every address, decoding only what pynet reads (LinkInfo's fields; an address's interface, prefix
and label), and the link changes of every protocol call (up/down, master, alias, name, group, MTU,
MAC; bridge port flags), encoded by hand.

pyroute2 decodes every attribute of the reply (stats, AF_SPEC, every nested linkinfo) in
Python: ~0.3 ms a `get`, and the protocol calls make 2-4 of them (the network's bridge, the
endpoint's links). Reading the eight fields LinkInfo needs takes ~0.02 ms. The kernel answers a
link request inside sendmsg, so the reply is there when send returns: the receive never waits.
pyroute2 spends ~0.15-0.3 ms of Python on each change too, these ~0.02 ms.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from .linkinfo import LinkInfo

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 18, 20, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LABEL = 1, 3
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_IFALIAS = 1, 3, 4, 10, 18, 20
IFLA_INFO_KIND = 1
IFLA_PROTINFO, IFLA_GROUP = 12, 27
IFLA_BRPORT_MODE, IFLA_BRPORT_ISOLATED = 4, 33  # in IFLA_PROTINFO (AF_BRIDGE)
NLA_F_NESTED = 0x8000
RTM_SETLINK, RTM_DELADDR = 19, 21
NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x4, 0x200, 0x400
IFLA_INFO_DATA = 2
IFLA_BR_FORWARD_DELAY, IFLA_BR_STP_STATE = 1, 5
VETH_INFO_PEER = 1
IFA_LOCAL = 2
IFF_UP = 0x1
NLA_TYPE_MASK = 0x3FFF
NLMSG_HDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
NLA_HDR = struct.Struct("=HH")
IFNAMSIZ = 16


def _attrs(msg: bytes, start: int, end: int):
    off = start
    while off + NLA_HDR.size <= end:
        length, kind = NLA_HDR.unpack_from(msg, off)
        if length < NLA_HDR.size:
            return
        yield kind & NLA_TYPE_MASK, msg[off + NLA_HDR.size: off + length]
        off += (length + 3) & ~3


def _nla(kind: int, payload: bytes) -> bytes:
    out = NLA_HDR.pack(NLA_HDR.size + len(payload), kind) + payload
    return out + b"\0" * (-len(out) % 4)


def _text(payload: bytes) -> str:
    return payload.split(b"\0", 1)[0].decode(errors="replace")


def parse(msg: bytes) -> LinkInfo:
    """An RTM_NEWLINK message (netlink header included) as LinkInfo."""
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(msg, NLMSG_HDR.size)
    fields = {"name": "", "alias": "", "kind": "", "master": 0, "mac": "", "mtu": 0}
    for kind, payload in _attrs(msg, NLMSG_HDR.size + IFINFOMSG.size, len(msg)):
        if kind == IFLA_IFNAME:
            fields["name"] = _text(payload)
        elif kind == IFLA_IFALIAS:
            fields["alias"] = _text(payload)
        elif kind == IFLA_MASTER and len(payload) >= 4:
            fields["master"] = struct.unpack_from("=I", payload)[0]
        elif kind == IFLA_ADDRESS:
            fields["mac"] = ":".join(f"{b:02x}" for b in payload)
        elif kind == IFLA_MTU and len(payload) >= 4:
            fields["mtu"] = struct.unpack_from("=I", payload)[0]
        elif kind == IFLA_LINKINFO:
            for sub, value in _attrs(payload, 0, len(payload)):
                if sub == IFLA_INFO_KIND:
                    fields["kind"] = _text(value)
    return LinkInfo(index=index, up=bool(flags & IFF_UP), **fields)


class RawLink:
    """A socket of its own; synchronous: each request is answered inside its send, and the event loop
    makes one at a time."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._seq = int.from_bytes(os.urandom(3), "little")
        # One receive buffer for the socket's life: recv() would allocate 64 KiB per read and shrink it
        # in place, and the heap fragments around what outlives it (kernel/nlmem.py).
        self._buf = bytearray(65536)

    def _socket(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
            s.bind((0, 0))
            s.settimeout(5)
            self._sock = s
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def get(self, name: str) -> LinkInfo | None:
        """The link called `name` in this network namespace, or None; OSError on any other refusal."""
        raw = name.encode()
        if not raw or len(raw) >= IFNAMSIZ:
            return None  # no link can have that name (the kernel would answer EINVAL)
        attr = raw + b"\0"
        nla = NLA_HDR.pack(NLA_HDR.size + len(attr), IFLA_IFNAME) + attr
        return self._link(IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + nla + b"\0" * (-len(nla) % 4))

    def by_index(self, index: int) -> LinkInfo | None:
        return self._link(IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0))

    def _link(self, body: bytes) -> LinkInfo | None:
        for kind, msg in self._request(RTM_GETLINK, NLM_F_REQUEST, body):
            if kind == RTM_NEWLINK:
                return parse(msg)
        return None

    def addresses(self) -> list[tuple[int, int, str, int, str]]:
        """(family, interface index, address, prefix length, label or "") of every address (one dump)."""
        out = []
        for kind, msg in self._request(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP,
                                       IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            if kind != RTM_NEWADDR:
                continue
            family, prefixlen, _flags, _scope, index = IFADDRMSG.unpack_from(msg, NLMSG_HDR.size)
            addr, label = None, ""
            for key, payload in _attrs(msg, NLMSG_HDR.size + IFADDRMSG.size, len(msg)):
                if key == IFA_ADDRESS and family in (socket.AF_INET, socket.AF_INET6):
                    addr = socket.inet_ntop(family, payload)
                elif key == IFA_LABEL:
                    label = _text(payload)
            if addr:
                out.append((family, index, addr, prefixlen, label))
        return out

    def set(self, index: int = 0, name: str = "", up: bool | None = None, master: int | None = None,
            alias: str | None = None, ifname: str | None = None, group: int | None = None,
            mtu: int | None = None, mac: str | None = None) -> None:
        """`ip link set`: the link `index` (or, without one, called `name`) gets what is given;
        `ifname` renames it. OSError (ENODEV: no such link) when the kernel refuses."""
        attrs = b""
        if not index:
            attrs += _nla(IFLA_IFNAME, name.encode() + b"\0")
        if ifname is not None:
            attrs += _nla(IFLA_IFNAME, ifname.encode() + b"\0")
        if master is not None:
            attrs += _nla(IFLA_MASTER, struct.pack("=I", master))
        if alias is not None:
            attrs += _nla(IFLA_IFALIAS, alias.encode() + b"\0")
        if group is not None:
            attrs += _nla(IFLA_GROUP, struct.pack("=I", group))
        if mtu is not None:
            attrs += _nla(IFLA_MTU, struct.pack("=I", mtu))
        if mac is not None:
            attrs += _nla(IFLA_ADDRESS, bytes(int(b, 16) for b in mac.split(":")))
        flags, change = (0, 0) if up is None else (IFF_UP if up else 0, IFF_UP)
        self._ack(RTM_SETLINK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change) + attrs)

    def create_bridge(self, name: str, mtu: int = 0) -> None:
        """A bridge without STP or forward delay (`ip link add NAME type bridge stp_state 0 forward_delay 0`)."""
        data = _nla(IFLA_BR_FORWARD_DELAY, struct.pack("=I", 0)) + _nla(IFLA_BR_STP_STATE, struct.pack("=I", 0))
        linkinfo = _nla(IFLA_INFO_KIND, b"bridge\0") + _nla(IFLA_INFO_DATA | NLA_F_NESTED, data)
        attrs = _nla(IFLA_IFNAME, name.encode() + b"\0") + (_nla(IFLA_MTU, struct.pack("=I", mtu)) if mtu else b"")
        self._new(IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attrs + _nla(IFLA_LINKINFO | NLA_F_NESTED, linkinfo))

    def create_veth(self, host: str, peer: str, mac: str, mtu: int = 0, master: int = 0, up: bool = False) -> None:
        """A veth pair: `host` (a port of bridge `master`, up, when given) and `peer` with `mac`."""
        mtu_nla = _nla(IFLA_MTU, struct.pack("=I", mtu)) if mtu else b""
        peer_msg = (IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _nla(IFLA_IFNAME, peer.encode() + b"\0")
                    + _nla(IFLA_ADDRESS, bytes(int(b, 16) for b in mac.split(":"))) + mtu_nla)
        linkinfo = _nla(IFLA_INFO_KIND, b"veth\0") + _nla(IFLA_INFO_DATA | NLA_F_NESTED,
                                                          _nla(VETH_INFO_PEER | NLA_F_NESTED, peer_msg))
        attrs = _nla(IFLA_IFNAME, host.encode() + b"\0") + mtu_nla
        if master:
            attrs += _nla(IFLA_MASTER, struct.pack("=I", master))
        flags = IFF_UP if up else 0
        self._new(IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, flags, flags) + attrs
                  + _nla(IFLA_LINKINFO | NLA_F_NESTED, linkinfo))

    def _new(self, body: bytes) -> None:
        for _ in self._request(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body,
                               gone_ok=False):
            pass

    def address(self, add: bool, index: int, ip: str, prefixlen: int, flags: int = 0) -> None:
        """`ip addr add|del IP/PREFIXLEN dev INDEX`; OSError EEXIST / EADDRNOTAVAIL when it already is /
        is not there."""
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        raw = socket.inet_pton(family, ip)
        body = IFADDRMSG.pack(family, prefixlen, flags, 0, index) + _nla(IFA_LOCAL, raw) + _nla(IFA_ADDRESS, raw)
        if add:
            self._request_ack(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)
        else:
            self._request_ack(RTM_DELADDR, 0, body)

    def _request_ack(self, msg_type: int, flags: int, body: bytes) -> None:
        for _ in self._request(msg_type, NLM_F_REQUEST | NLM_F_ACK | flags, body, gone_ok=False):
            pass

    def brport(self, index: int, isolated: bool, hairpin: bool) -> None:
        """A bridge port's isolated and hairpin flags (`bridge link set dev X isolated .. hairpin ..`)."""
        protinfo = _nla(IFLA_BRPORT_MODE, bytes([int(hairpin)])) + _nla(IFLA_BRPORT_ISOLATED, bytes([int(isolated)]))
        self._ack(RTM_SETLINK, IFINFOMSG.pack(socket.AF_BRIDGE, 0, index, 0, 0)
                  + _nla(IFLA_PROTINFO | NLA_F_NESTED, protinfo))

    def _ack(self, msg_type: int, body: bytes) -> None:
        """A change, and the kernel's answer: nothing, or OSError (ENODEV included)."""
        for _ in self._request(msg_type, NLM_F_REQUEST | NLM_F_ACK, body, gone_ok=False):
            pass

    def _request(self, msg_type: int, flags: int, body: bytes, gone_ok: bool = True):
        """Send one request; yield (type, message) of its replies until the last. A missing link
        (ENODEV) ends it with nothing when `gone_ok`; any other error is OSError."""
        self._seq = (self._seq + 1) & 0x7FFFFFFF
        s = self._socket()
        s.send(NLMSG_HDR.pack(NLMSG_HDR.size + len(body), msg_type, flags, self._seq, 0) + body)
        dump = flags & NLM_F_DUMP
        while True:
            n = s.recv_into(self._buf)  # a dump comes in as many reads as it needs
            data = bytes(self._buf[:n])
            off = 0
            while off + NLMSG_HDR.size <= len(data):
                length, kind, _flags, seq, _port = NLMSG_HDR.unpack_from(data, off)
                if length < NLMSG_HDR.size:
                    break
                msg = data[off: off + length]
                off += (length + 3) & ~3
                if seq != self._seq:
                    continue  # a late reply to a request that timed out
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", msg, NLMSG_HDR.size)[0]
                    if code == 0 or (code == errno.ENODEV and gone_ok):
                        return
                    raise OSError(code, os.strerror(code))
                yield kind, msg
                if not dump:
                    return
