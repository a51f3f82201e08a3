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
RTM_NEWLINK, RTM_GETLINK, RTM_SETLINK, RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 16, 18, 19, 20, 21, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_ECHO, NLM_F_DUMP, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x8, 0x300, 0x200, 0x400
NLA_F_NESTED, NLA_TYPE_MASK = 0x8000, 0x3FFF
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_PROTINFO = 1, 3, 4, 10, 12
IFLA_LINKINFO, IFLA_IFALIAS, IFLA_GROUP = 18, 20, 27
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2  # in IFLA_LINKINFO
IFLA_BR_FORWARD_DELAY, IFLA_BR_STP_STATE = 1, 5  # a bridge's IFLA_INFO_DATA
VETH_INFO_PEER = 1  # a veth's IFLA_INFO_DATA
IFLA_BRPORT_MODE, IFLA_BRPORT_ISOLATED = 4, 33  # in IFLA_PROTINFO (AF_BRIDGE)
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL = 1, 2, 3
IFF_UP = 0x1
IFNAMSIZ = 16
NLMSG_HDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
NLA_HDR = struct.Struct("=HH")


def attributes(msg: bytes, start: int, end: int):
    """(type, payload) of each netlink attribute of msg[start:end]."""
    off = start
    while off + NLA_HDR.size <= end:
        length, kind = NLA_HDR.unpack_from(msg, off)
        if length < NLA_HDR.size:
            return
        yield kind & NLA_TYPE_MASK, msg[off + NLA_HDR.size: off + length]
        off += (length + 3) & ~3


def nla(kind: int, payload: bytes) -> bytes:
    out = NLA_HDR.pack(NLA_HDR.size + len(payload), kind) + payload
    return out + b"\0" * (-len(out) % 4)


def _str(kind: int, text: str) -> bytes:
    return nla(kind, text.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return nla(kind, struct.pack("=I", value))


def _mac(kind: int, mac: str) -> bytes:
    return nla(kind, bytes.fromhex(mac.replace(":", "")))


def _text(payload: bytes) -> str:
    return payload.split(b"\0", 1)[0].decode(errors="replace")


def parse(msg: bytes) -> LinkInfo:
    """An RTM_NEWLINK message (netlink header included) as LinkInfo."""
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(msg, NLMSG_HDR.size)
    fields = {"name": "", "alias": "", "kind": "", "master": 0, "mac": "", "mtu": 0}
    for kind, payload in attributes(msg, NLMSG_HDR.size + IFINFOMSG.size, len(msg)):
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
            for sub, value in attributes(payload, 0, len(payload)):
                if sub == IFLA_INFO_KIND:
                    fields["kind"] = _text(value)
    return LinkInfo(index=index, up=bool(flags & IFF_UP), **fields)


class NetlinkSocket:
    """A netlink socket of its own (made at first use, `PROTOCOL`), and one receive buffer for its
    life: recv() would allocate 64 KiB per read and shrink it in place, and the heap fragments
    around what outlives it (kernel/nlmem.py)."""

    PROTOCOL = NETLINK_ROUTE
    TIMEOUT: float | None = 5  # seconds a read waits (0: never, the answers are there after the send)

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._seq = int.from_bytes(os.urandom(3), "little")
        self._buf = bytearray(65536)

    def _socket(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, self.PROTOCOL)
            s.bind((0, 0))
            s.settimeout(self.TIMEOUT)
            self._sock = s
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class RawLink(NetlinkSocket):
    """A socket of its own; synchronous: each request is answered inside its send, and the event loop
    makes one at a time."""

    def get(self, name: str) -> LinkInfo | None:
        """The link called `name` in this network namespace, or None; OSError on any other refusal."""
        if not name or len(name.encode()) >= IFNAMSIZ:
            return None  # no link can have that name (the kernel would answer EINVAL)
        return self._link(IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _str(IFLA_IFNAME, name))

    def by_index(self, index: int) -> LinkInfo | None:
        return self._link(IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0))

    def _link(self, body: bytes) -> LinkInfo | None:
        for kind, msg in self.request(RTM_GETLINK, NLM_F_REQUEST, body):
            if kind == RTM_NEWLINK:
                return parse(msg)
        return None

    def addresses(self) -> list[tuple[int, int, str, int, str]]:
        """(family, interface index, address, prefix length, label or "") of every address (one dump)."""
        out = []
        for kind, msg in self.request(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP,
                                       IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            if kind != RTM_NEWADDR:
                continue
            family, prefixlen, _flags, _scope, index = IFADDRMSG.unpack_from(msg, NLMSG_HDR.size)
            addr, label = None, ""
            for key, payload in attributes(msg, NLMSG_HDR.size + IFADDRMSG.size, len(msg)):
                if key == IFA_ADDRESS and family in (socket.AF_INET, socket.AF_INET6):
                    addr = socket.inet_ntop(family, payload)
                elif key == IFA_LABEL:
                    label = _text(payload)
            if addr:
                out.append((family, index, addr, prefixlen, label))
        return out

    def set(self, index: int = 0, name: str = "", up: bool | None = None, master: int | None = None,
            alias: str | None = None, ifname: str | None = None, group: int | None = None,
            mtu: int | None = None, mac: str | None = None) -> bool:
        """`ip link set`: the link `index` (or, without one, called `name`) gets what is given;
        `ifname` renames it. OSError (ENODEV: no such link) when the kernel refuses."""
        attrs = b"" if index else _str(IFLA_IFNAME, name)
        if ifname is not None:
            attrs += _str(IFLA_IFNAME, ifname)
        if master is not None:
            attrs += _u32(IFLA_MASTER, master)
        if alias is not None:
            attrs += _str(IFLA_IFALIAS, alias)
        if group is not None:
            attrs += _u32(IFLA_GROUP, group)
        if mtu is not None:
            attrs += _u32(IFLA_MTU, mtu)
        if mac is not None:
            attrs += _mac(IFLA_ADDRESS, mac)
        flags, change = (0, 0) if up is None else (IFF_UP if up else 0, IFF_UP)
        return self._ack(RTM_SETLINK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change) + attrs)

    def create_bridge(self, name: str, mtu: int = 0) -> LinkInfo | None:
        """A bridge without STP or forward delay (`ip link add NAME type bridge stp_state 0 forward_delay 0`)."""
        data = _u32(IFLA_BR_FORWARD_DELAY, 0) + _u32(IFLA_BR_STP_STATE, 0)
        linkinfo = _str(IFLA_INFO_KIND, "bridge") + nla(IFLA_INFO_DATA | NLA_F_NESTED, data)
        attrs = _str(IFLA_IFNAME, name) + (_u32(IFLA_MTU, mtu) if mtu else b"")
        return self._create(IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attrs
                            + nla(IFLA_LINKINFO | NLA_F_NESTED, linkinfo))

    def create_veth(self, host: str, peer: str, mac: str, mtu: int = 0, master: int = 0,
                    up: bool = False) -> LinkInfo | None:
        """A veth pair: `host` (a port of bridge `master`, up, when given) and `peer` with `mac`; the
        host side as the kernel echoed it (see _create)."""
        mtu_nla = _u32(IFLA_MTU, mtu) if mtu else b""
        peer_msg = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _str(IFLA_IFNAME, peer) + _mac(IFLA_ADDRESS, mac) \
            + mtu_nla
        linkinfo = _str(IFLA_INFO_KIND, "veth") + nla(IFLA_INFO_DATA | NLA_F_NESTED,
                                                       nla(VETH_INFO_PEER | NLA_F_NESTED, peer_msg))
        attrs = _str(IFLA_IFNAME, host) + mtu_nla + (_u32(IFLA_MASTER, master) if master else b"")
        flags = IFF_UP if up else 0
        return self._create(IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, flags, flags) + attrs
                            + nla(IFLA_LINKINFO | NLA_F_NESTED, linkinfo))

    def _create(self, body: bytes) -> LinkInfo | None:
        """A new link (OSError EEXIST when its name is taken): the kernel's echo of it (6.3 and later
        echo a new link: its index without a look-up; its master, set after the echo, not yet), or
        None from a kernel that does not echo."""
        made = None
        for kind, msg in self.request(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO | NLM_F_CREATE | NLM_F_EXCL,
                                      body, gone_ok=False):
            if kind == RTM_NEWLINK and made is None:
                made = parse(msg)
        return made

    def address(self, add: bool, index: int, ip: str, prefixlen: int, flags: int = 0) -> bool:
        """`ip addr add|del IP/PREFIXLEN dev INDEX`; OSError EEXIST / EADDRNOTAVAIL when it already is /
        is not there."""
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        raw = socket.inet_pton(family, ip)
        body = IFADDRMSG.pack(family, prefixlen, flags, 0, index) + nla(IFA_LOCAL, raw) + nla(IFA_ADDRESS, raw)
        if add:
            return self._ack(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL)
        return self._ack(RTM_DELADDR, body)

    def brport(self, index: int, isolated: bool, hairpin: bool) -> bool:
        """A bridge port's isolated and hairpin flags (`bridge link set dev X isolated .. hairpin ..`)."""
        protinfo = nla(IFLA_BRPORT_MODE, bytes([int(hairpin)])) + nla(IFLA_BRPORT_ISOLATED, bytes([int(isolated)]))
        return self._ack(RTM_SETLINK, IFINFOMSG.pack(socket.AF_BRIDGE, 0, index, 0, 0)
                         + nla(IFLA_PROTINFO | NLA_F_NESTED, protinfo))

    def _ack(self, msg_type: int, body: bytes, flags: int = 0) -> bool:
        """A change and the kernel's answer: True, or OSError (ENODEV included)."""
        for _ in self.request(msg_type, NLM_F_REQUEST | NLM_F_ACK | flags, body, gone_ok=False):
            pass
        return True

    def request(self, msg_type: int, flags: int, body: bytes, gone_ok: bool = True):
        """Send one request; yield (type, message) of its replies until the last. A missing link
        (ENODEV) ends it with nothing when `gone_ok`; any other error is OSError."""
        self._seq = (self._seq + 1) & 0x7FFFFFFF
        s = self._socket()
        s.send(NLMSG_HDR.pack(NLMSG_HDR.size + len(body), msg_type, flags, self._seq, 0) + body)
        dump = flags & NLM_F_DUMP
        while True:
            n = s.recv_into(self._buf)  # a dump comes in as many reads as it needs
            data = bytes(memoryview(self._buf)[:n])  # one copy (a bytearray slice would be a second)
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
                if not dump and not flags & NLM_F_ACK:
                    return  # a get's one answer; a change's replies (an echo) end at its ACK
