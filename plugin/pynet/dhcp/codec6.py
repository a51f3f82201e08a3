"""DHCPv6 messages (RFC 8415): options, IA_NA, status codes, client FQDN, DUIDs; checks of what comes back.

Pure (no sockets): pyroute2 (0.9.7) has no DHCPv6 codec, so the few messages pynet needs are built here.
"""

from __future__ import annotations

import ipaddress
import struct
import uuid
from dataclasses import dataclass

from .codec import DhcpError, dns_wire

SOLICIT, ADVERTISE, REQUEST, CONFIRM, RENEW, REBIND, REPLY, RELEASE, DECLINE = range(1, 10)
NAMES = {1: "SOLICIT", 2: "ADVERTISE", 3: "REQUEST", 4: "CONFIRM", 5: "RENEW", 6: "REBIND", 7: "REPLY",
         8: "RELEASE", 9: "DECLINE", 10: "RECONFIGURE", 11: "INFORMATION-REQUEST", 12: "RELAY-FORW", 13: "RELAY-REPL"}
OPT_CLIENTID, OPT_SERVERID, OPT_IA_NA, OPT_IAADDR, OPT_ORO, OPT_PREFERENCE, OPT_ELAPSED_TIME = 1, 2, 3, 5, 6, 7, 8
OPT_STATUS_CODE, OPT_RAPID_COMMIT, OPT_DNS_SERVERS, OPT_DOMAIN_LIST, OPT_CLIENT_FQDN = 13, 14, 23, 24, 39
SUCCESS, UNSPEC_FAIL, NO_ADDRS_AVAIL, NO_BINDING, NOT_ON_LINK, USE_MULTICAST = range(6)
STATUS_NAMES = {0: "Success", 1: "UnspecFail", 2: "NoAddrsAvail", 3: "NoBinding", 4: "NotOnLink", 5: "UseMulticast"}
INFINITY = 0xFFFFFFFF
IDENTITY_NAMESPACE = uuid.UUID("4bc997da-14b1-53a9-a628-bc51338ce084")  # = uuid5(NAMESPACE_URL, "pynet:dhcp-identity")

# ---------------------------------------------------------------- identity

def duid_for(identity: str) -> bytes:
    """DUID-UUID (RFC 6355): 0x0004 + uuid5(IDENTITY_NAMESPACE, identity)."""
    if not isinstance(identity, str) or not identity:
        raise DhcpError("DHCPv6 needs a stable identity (the container's name) to derive its DUID")
    return b"\x00\x04" + uuid.uuid5(IDENTITY_NAMESPACE, identity).bytes


def duid_ll(mac: str) -> bytes:
    """DUID-LL (RFC 8415 11.4): 0x0003, hardware type 1 (Ethernet), the MAC: for a container without a name."""
    raw = bytes(int(x, 16) for x in mac.split(":"))
    if len(raw) != 6:
        raise DhcpError(f"{mac!r} is not a MAC address")
    return b"\x00\x03\x00\x01" + raw


def iaid_ll(mac: str) -> int:
    return int.from_bytes(duid_ll(mac)[-4:], "big")


def iaid_for(identity: str) -> int:
    return int.from_bytes(duid_for(identity)[2:6], "big")


# ---------------------------------------------------------------- codec

def option(code: int, data: bytes = b"") -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def decode_options(data: bytes, where: str = "message") -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i < len(data):
        if i + 4 > len(data):
            raise DhcpError(f"malformed DHCPv6 {where}: {len(data) - i} stray bytes after the options")
        code, length = struct.unpack("!HH", data[i:i + 4])
        if i + 4 + length > len(data):
            raise DhcpError(f"malformed DHCPv6 {where}: option {code} says {length} bytes, "
                            f"{len(data) - i - 4} left")
        out.append((code, data[i + 4:i + 4 + length]))
        i += 4 + length
    return out


def first(opts: list[tuple[int, bytes]], code: int) -> bytes | None:
    return next((v for c, v in opts if c == code), None)


def build(msg_type: int, txid: int, opts: list[bytes]) -> bytes:
    return bytes([msg_type]) + txid.to_bytes(3, "big") + b"".join(opts)


@dataclass
class Message:
    type: int
    txid: int
    options: list

    @property
    def server_id(self) -> bytes | None:
        return first(self.options, OPT_SERVERID)

    @property
    def client_id(self) -> bytes | None:
        return first(self.options, OPT_CLIENTID)


def parse(data: bytes) -> Message:
    if len(data) < 4:
        raise DhcpError("malformed DHCPv6 message: shorter than its header")
    return Message(data[0], int.from_bytes(data[1:4], "big"), decode_options(data[4:]))


def status(data: bytes | None) -> tuple[int, str]:
    if data is None:
        return SUCCESS, ""
    if len(data) < 2:
        raise DhcpError("malformed DHCPv6 status code option")
    return struct.unpack("!H", data[:2])[0], data[2:].decode("utf-8", "replace")


def ia_na(iaid: int, addrs: list[str] = (), t1: int = 0, t2: int = 0) -> bytes:
    sub = b"".join(option(OPT_IAADDR, ipaddress.IPv6Address(a).packed + bytes(8)) for a in addrs)
    return option(OPT_IA_NA, struct.pack("!III", iaid, t1, t2) + sub)


@dataclass
class IaAddr:
    ip: str
    preferred: int
    valid: int
    status: tuple[int, str]


@dataclass
class IaNa:
    iaid: int
    t1: int
    t2: int
    addrs: list
    status: tuple[int, str]


def parse_ia_na(data: bytes) -> IaNa:
    if len(data) < 12:
        raise DhcpError(f"malformed DHCPv6 IA_NA: {len(data)} bytes")
    iaid, t1, t2 = struct.unpack("!III", data[:12])
    subs = decode_options(data[12:], "IA_NA")
    addrs = []
    for code, v in subs:
        if code != OPT_IAADDR:
            continue
        if len(v) < 24:
            raise DhcpError(f"malformed DHCPv6 IAADDR: {len(v)} bytes")
        pref, valid = struct.unpack("!II", v[16:24])
        addrs.append(IaAddr(str(ipaddress.IPv6Address(v[:16])), pref, valid,
                            status(first(decode_options(v[24:], "IAADDR"), OPT_STATUS_CODE))))
    return IaNa(iaid, t1, t2, addrs, status(first(subs, OPT_STATUS_CODE)))


def fqdn_option(hostname: str, domain: str = "") -> bytes:
    """Option 39 (RFC 4704): flag S (the server updates AAAA) + the name in wire format (partial without domain)."""
    name = f"{hostname}.{domain}".strip(".") if domain else hostname
    wire = dns_wire(name, "DHCPv6 FQDN", complete=bool(domain))
    if len(wire) > 255:
        raise DhcpError(f"DHCPv6 FQDN {name!r} is too long")
    return option(OPT_CLIENT_FQDN, b"\x01" + wire)


def check_address6(ip: str, prefix: ipaddress.IPv6Network | None) -> str:
    try:
        addr = ipaddress.IPv6Address(ip)
    except ValueError:
        return f"{ip!r} is not an IPv6 address"
    for test, what in ((addr.is_unspecified, "the unspecified"), (addr.is_loopback, "a loopback"),
                       (addr.is_multicast, "a multicast"), (addr.is_link_local, "a link-local"),
                       (addr.ipv4_mapped is not None, "an IPv4-mapped")):
        if test:
            return f"{addr} is {what} address"
    if prefix is not None and addr not in prefix:
        return f"{addr} is outside the network's subnet {prefix}"
    return ""

