"""DHCPv4 messages: pyroute2's codec (dhcp4msg) plus option 81, what pynet sends, and checks of what it gets.

Pure (no sockets). See client.py for how frames reach the LAN and what of pyroute2.dhcp is used.
"""

from __future__ import annotations

import ipaddress

from pyroute2.dhcp.dhcp4msg import dhcp4msg
from pyroute2.dhcp.dhcp4socket import AsyncDHCP4Socket
from pyroute2.dhcp.enums.dhcp import MessageType, Option
from pyroute2.dhcp.messages import ReceivedDHCPMessage

from ..errors import PynetError

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
FLAG_BROADCAST = 0x8000
PARAMETERS = [Option.SUBNET_MASK, Option.ROUTER, Option.LEASE_TIME, Option.RENEWAL_TIME, Option.REBINDING_TIME]


class DhcpError(PynetError):
    pass


class DhcpNak(DhcpError):
    """The server refused (DHCPNAK, or a renewal answered with another address): the lease is gone."""


def client_id_for(identity: str) -> bytes:
    """Option 61 for a stable identity: type 0 (not a hardware address, RFC 2132 9.14) + UTF-8 bytes."""
    raw = identity.encode() if isinstance(identity, str) else b""
    if not 1 <= len(raw) <= 254:
        raise DhcpError(f"DHCP identity {identity!r} must be 1 to 254 bytes (it becomes the client-id)")
    return b"\x00" + raw


def dns_wire(name: str, what: str, complete: bool = True) -> bytes:
    """A domain name in DNS wire format (length-prefixed labels; the root label when `complete`)."""
    wire = b""
    for label in name.split("."):
        raw = label.encode()
        if not 1 <= len(raw) <= 63:
            raise DhcpError(f"{what} {name!r}: each label must be 1 to 63 bytes")
        wire += bytes([len(raw)]) + raw
    return wire + (b"\0" if complete else b"")


def fqdn_option(hostname: str, domain: str) -> bytes:
    """Option 81 (RFC 4702): flags S|E (server updates A; canonical wire format), RCODEs 0, the name."""
    name = f"{hostname}.{domain}".strip(".")
    wire = dns_wire(name, "DHCP FQDN")
    if len(wire) > 255 - 3:
        raise DhcpError(f"DHCP FQDN {name!r} is too long")
    return bytes([0x05, 0, 0]) + wire


def check_address(ip: str, subnet: ipaddress.IPv4Network | None) -> str:
    """Why `ip` cannot be a container's address ("" when it can)."""
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        return f"{ip!r} is not an IPv4 address"
    if addr.is_unspecified or addr == ipaddress.IPv4Address("255.255.255.255"):
        return f"{addr} is not a host address"
    for test, what in ((addr.is_multicast, "multicast"), (addr.is_loopback, "loopback"),
                       (addr.is_link_local, "link-local"), (addr.is_reserved, "reserved")):
        if test:
            return f"{addr} is a {what} address"
    if subnet is not None:
        if addr not in subnet:
            return f"{addr} is outside the network's subnet {subnet}"
        if subnet.prefixlen <= 30 and addr in (subnet.network_address, subnet.broadcast_address):
            return f"{addr} is the network or broadcast address of {subnet}"
    return ""


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def _mask_prefix(mask: str) -> int | None:
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
    except ValueError:
        return None


def _unicast(value) -> str:
    return value if isinstance(value, str) and not check_address(value, None) else ""


# ---------------------------------------------------------------- the codec: pyroute2's, plus option 81

class Message(dhcp4msg):
    """pyroute2's DHCPv4 codec with the client FQDN option (81), which it does not define."""

    options = dhcp4msg.options + ((Option.CLIENT_FQDN, "array8"),)


def check_complete(msg: dhcp4msg) -> str:
    """Why pyroute2's decoder stopped before the end of the options ("" when it did not).

    dhcpmsg.decode() logs and breaks out of its loop on an option it cannot decode (wrong length,
    truncated, unknown message type): everything after it is silently lost. It leaves `offset` on the
    offending option, while a complete decode stops on END (255) or at the end of the buffer.
    """
    buf, off = msg.buf, msg.offset
    if off < len(buf) and buf[off] != Option.END:
        length = buf[off + 1] if off + 1 < len(buf) else None
        return f"option {buf[off]} is malformed (length {length}, {len(buf) - off - 2} bytes left)"
    return ""


def request(msg_type: int, xid: int, mac: str, client_id: bytes, *, ciaddr: str = "0.0.0.0",
            requested: str = "", server: str = "", hostname: str = "", domain: str = "",
            broadcast: bool = True) -> Message:
    """A client message (not yet encoded): what pynet sends for a container."""
    cid = {"type": client_id[0], "key": client_id[1:]}
    if client_id[0] == 1 and len(client_id) == 7:
        cid["key"] = ":".join(f"{b:02x}" for b in client_id[1:])  # pyroute2 wants a MAC string for type 1
    opts: dict = {"message_type": MessageType(msg_type), "client_id": cid}
    if requested:
        opts["requested_ip"] = requested
    if server:
        opts["server_id"] = server
    if msg_type not in (RELEASE, DECLINE):
        if hostname and domain:
            opts["client_fqdn"] = fqdn_option(hostname, domain)
        elif hostname:
            opts["host_name"] = hostname.encode()[:63].decode(errors="ignore")
    if msg_type in (DISCOVER, REQUEST):
        opts["parameter_list"] = list(PARAMETERS)
    return Message({"op": 1, "xid": xid, "flags": FLAG_BROADCAST if broadcast else 0, "ciaddr": ciaddr,
                    "chaddr": mac, "options": opts})


def decode_reply(raw: ReceivedDHCPMessage | bytes) -> ReceivedDHCPMessage:
    """A server's message from a frame (or as pyroute2's socket decoded it), checked; DhcpError if unusable."""
    try:
        msg = raw if isinstance(raw, ReceivedDHCPMessage) else AsyncDHCP4Socket._decode_msg(raw)
    except Exception as e:  # noqa: BLE001 - pyroute2 raises ValueError, IndexError, ... on hostile input
        raise DhcpError(f"undecodable DHCP frame ({type(e).__name__}: {e})") from None
    why = check_complete(msg.dhcp)
    if why:
        raise DhcpError(f"malformed DHCP reply from {msg.eth_src}: {why}")
    if msg.dhcp.get("op") != 2:
        raise DhcpError("not a BOOTREPLY")
    if "message_type" not in msg.dhcp["options"]:
        raise DhcpError(f"DHCP reply from {msg.eth_src} has no message type")
    return msg

