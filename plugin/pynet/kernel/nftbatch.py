"""A protocol call's set-element changes as one nf_tables netlink batch, encoded by hand.

libnftables parses the script, then fills its cache before it sends anything: it dumps every
table, chain, set and flowtable of every family on the host (Docker's iptables-nft tables
included), the elements of each interval set it touches, and the stateful objects: ten round
trips and their decoding before the batch. A call's change is a few elements in sets whose types
pynet declared itself, so here they are encoded from those declarations and sent in one batch (one
send, the acknowledgements read back). A network's four elements, on this test machine's host
namespace: 0.32 ms p50 through libnftables, 0.10 ms here back-to-back; 0.95 and 0.46 ms after
20 ms idle (what is left is the kernel's transaction). One batch is one transaction, as one
script is: the kernel takes all of it or nothing.

Only `add element` / `delete element` lines of declared sets are taken, with keys and values of
the types below; a script with anything else returns None from `encode` and goes to libnftables.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

from .rawlink import (IFNAMSIZ, NLA_F_NESTED, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST, NLMSG_ERROR, NLMSG_HDR,
                      NetlinkSocket, nla)

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA, NFTA_SET_ELEM_KEY_END = 1, 2, 10
NFTA_DATA_VALUE = 1
FAMILIES = {"ip": 2, "ip6": 10, "inet": 1, "bridge": 7, "netdev": 5, "arp": 3}
NFGENMSG = struct.Struct("=BBH")  # family, version, resource id (big endian)
MAX_BATCH = 32768  # bytes; a larger change (thousands of ports) goes to libnftables in a worker thread
PROTOS = {"tcp": 6, "udp": 17, "sctp": 132}


def _nest(kind: int, payload: bytes) -> bytes:
    return nla(kind | NLA_F_NESTED, payload)


# ------------------------------------------------------------ values
def _ifname(text: str, _end: bool) -> bytes | None:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"' or '"' in text[1:-1] or "*" in text or "\\" in text:
        return None
    raw = text[1:-1].encode()
    return raw + b"\0" * (IFNAMSIZ - len(raw)) if 0 < len(raw) < IFNAMSIZ else None


def _addr(version: int):
    def encode(text: str, end: bool) -> bytes | None:
        try:
            if "/" in text:
                net = ipaddress.ip_network(text)  # strict: host bits set is not a prefix nft would take
                ip = net.broadcast_address if end else net.network_address
            else:
                ip = ipaddress.ip_address(text)
        except ValueError:
            return None
        return ip.packed if ip.version == version else None
    return encode


def _ether(text: str, _end: bool) -> bytes | None:
    parts = text.split(":")
    if len(parts) != 6 or any(len(p) != 2 for p in parts):
        return None
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        return None


def _proto(text: str, _end: bool) -> bytes | None:
    n = PROTOS.get(text, int(text) if text.isdigit() else -1)
    return bytes([n]) if 0 <= n <= 255 else None


def _service(text: str, _end: bool) -> bytes | None:
    return struct.pack(">H", int(text)) if text.isdigit() and int(text) <= 65535 else None


def _raw128(text: str, _end: bool) -> bytes | None:
    try:
        n = int(text, 16) if text.startswith("0x") else -1
    except ValueError:
        return None
    return n.to_bytes(16, "big") if 0 <= n < 1 << 128 else None


FIELDS = {"ifname": _ifname, "iifname": _ifname, "oifname": _ifname, "ipv4_addr": _addr(4), "ipv6_addr": _addr(6),
          "ether_addr": _ether, "inet_proto": _proto, "inet_service": _service, "@th,64,128": _raw128}


class SetType:
    """A set's or map's key (and value) fields, from its nft declaration ("ifname . ipv4_addr",
    "inet_proto . inet_service : ipv4_addr . inet_service")."""

    def __init__(self, spec: str, interval: bool = False):
        key, _sep, data = spec.partition(" : ")
        self.key = tuple(key.split(" . "))
        self.data = tuple(data.split(" . ")) if data else ()
        self.interval = interval
        unknown = [f for f in self.key + self.data if f not in FIELDS]
        if unknown:
            raise ValueError(f"no encoding for {', '.join(unknown)}")

    def value(self, fields: tuple[str, ...], text: str, end: bool = False) -> bytes | None:
        """The bytes of `text` ("a . b"): each field at its width, each padded to 32 bits when there
        are several (nft's concatenations), as the kernel compares them."""
        parts = text.split(" . ")
        if len(parts) != len(fields):
            return None
        out = b""
        for kind, part in zip(fields, parts):
            raw = FIELDS[kind](part.strip(), end)
            if raw is None:
                return None
            out += raw + b"\0" * (-len(raw) % 4 if len(fields) > 1 else 0)
        return out

    def element(self, item: str) -> bytes | None:
        key, sep, data = item.partition(" : ")
        if bool(sep) != bool(self.data):
            return None
        k = self.value(self.key, key)
        if k is None:
            return None
        out = _nest(NFTA_SET_ELEM_KEY, nla(NFTA_DATA_VALUE, k))
        if self.interval:
            end = self.value(self.key, key, end=True)
            if end is None:
                return None
            out += _nest(NFTA_SET_ELEM_KEY_END, nla(NFTA_DATA_VALUE, end))
        if self.data:
            d = self.value(self.data, data)
            if d is None:
                return None
            out += _nest(NFTA_SET_ELEM_DATA, nla(NFTA_DATA_VALUE, d))
        return _nest(NFTA_LIST_ELEM, out)


def _split(items: str) -> list[str] | None:
    """`a, b . c : d` into its elements; None when a quoted name could hide a separator."""
    if '"' in items and ("," in items.replace(", ", "") or items.count('"') % 2):
        return None
    return [item.strip() for item in items.split(", ")]


def _control(kind: int, seq: int) -> bytes:
    """A batch's begin or end message (nf_tables' subsystem in its resource id)."""
    return (NLMSG_HDR.pack(NLMSG_HDR.size + NFGENMSG.size, kind, NLM_F_REQUEST, seq, 0)
            + NFGENMSG.pack(socket.AF_UNSPEC, 0, socket.htons(NFNL_SUBSYS_NFTABLES)))


class Batch(NetlinkSocket):
    """Declared sets (family, table, set) -> SetType, and a netfilter netlink socket of its own."""

    PROTOCOL = NETLINK_NETFILTER
    TIMEOUT = 0  # the kernel runs a batch inside the send: its answers are all queued when it returns

    def __init__(self) -> None:
        super().__init__()
        self.sets: dict[tuple[str, str, str], SetType] = {}

    def declare(self, family: str, table: str, types: dict[str, SetType]) -> None:
        for name, typ in types.items():
            self.sets[family, table, name] = typ

    def encode(self, lines: list[str]) -> list[tuple[int, int, bytes, str]] | None:
        """(message type, family, body, the line) of each line, or None when a line is not an element
        change of a declared set this module can encode."""
        out, size = [], 0
        for line in lines:
            words = line.split(" ", 5)
            if len(words) != 6 or words[1] != "element" or words[0] not in ("add", "delete"):
                return None
            op, _element, family, table, name, rest = words
            typ = self.sets.get((family, table, name))
            if typ is None or family not in FAMILIES or not rest.startswith("{ ") or not rest.endswith(" }"):
                return None
            items = _split(rest[2:-2])
            if not items:
                return None
            elems = b""
            for item in items:
                elem = typ.element(item)
                if elem is None:
                    return None
                elems += elem
                size += len(elem)
                if size > MAX_BATCH:  # also keeps each attribute within netlink's 64 KiB
                    return None
            body = (NFGENMSG.pack(FAMILIES[family], 0, 0) + nla(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
                    + nla(NFTA_SET_ELEM_LIST_SET, name.encode() + b"\0") + _nest(NFTA_SET_ELEM_LIST_ELEMENTS, elems))
            size += len(body) - len(elems) + NLMSG_HDR.size
            out.append((NFT_MSG_NEWSETELEM if op == "add" else NFT_MSG_DELSETELEM, FAMILIES[family], body, line))
        return out

    def send(self, msgs: list[tuple[int, int, bytes, str]]) -> None:
        """One transaction; OSError (with the refused line) when the kernel takes none of it."""
        s = self._socket()
        first = self._seq = (self._seq + 1) & 0x3FFFFFFF  # + the batch's messages: never past 32 bits
        batch = [_control(NFNL_MSG_BATCH_BEGIN, first)]
        lines = {}
        for msg_type, _family, body, line in msgs:
            self._seq += 1
            lines[self._seq] = line
            batch.append(NLMSG_HDR.pack(NLMSG_HDR.size + len(body), NFNL_SUBSYS_NFTABLES << 8 | msg_type,
                                        NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE if msg_type == NFT_MSG_NEWSETELEM
                                                                     else 0), self._seq, 0) + body)
        self._seq += 1
        batch.append(_control(NFNL_MSG_BATCH_END, self._seq))
        s.send(b"".join(batch))
        # The kernel runs the batch inside the send: every message's answer (an ACK, or the error
        # that made it take nothing) is queued by now, so the reads never wait.
        waiting = set(lines)
        error: OSError | None = None
        while waiting:
            try:
                n = s.recv_into(self._buf)
            except BlockingIOError:
                break
            data = memoryview(self._buf)[:n]
            off = 0
            while off + NLMSG_HDR.size <= n:
                length, kind, _flags, seq, _port = NLMSG_HDR.unpack_from(data, off)
                if length < NLMSG_HDR.size:
                    break
                if kind == NLMSG_ERROR and (seq in waiting or seq == first):
                    code = -struct.unpack_from("=i", data, off + NLMSG_HDR.size)[0]
                    waiting.discard(seq)
                    if code and error is None:
                        error = OSError(code, f"{os.strerror(code)}: {lines.get(seq, 'the batch')}")
                    if seq == first and code:
                        waiting.clear()  # the batch itself refused: no message of it was run
                off += (length + 3) & ~3
        if error is not None:
            raise error
        if waiting:
            raise OSError(errno.EPROTO, "nf_tables answered part of the batch")
