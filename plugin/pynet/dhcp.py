"""A small DHCPv4 client speaking through an AF_PACKET socket on the LAN interface.

pynet asks the LAN's own DHCP server for each container's address with the
container's MAC as chaddr, before the container's macvlan exists (broadcast
flag set), and renews and releases on its behalf. Frames go out on the parent
from the host namespace; replies, even unicast ones to a container's MAC, are
seen there too: a packet socket bound to ETH_P_ALL on a macvlan's lower device
is a tap that runs before macvlan claims the frame (an ETH_P_IP socket runs
after, and misses unicast replies to container MACs). A classic BPF filter
keeps only UDP to port 68 so a busy LAN costs nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import struct
import time
from dataclasses import asdict, dataclass, field

from .errors import KernelError, PynetError

ETH_P_IP = 0x0800
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
# tcpdump -dd 'ip and udp dst port 68' (unfragmented first fragment): (code, jt, jf, k)
BPF_UDP_DST_68 = [
    (0x28, 0, 0, 12), (0x15, 0, 8, 0x0800),       # ethertype IPv4
    (0x30, 0, 0, 23), (0x15, 0, 6, 17),           # protocol UDP
    (0x28, 0, 0, 20), (0x45, 4, 0, 0x1FFF),       # not a later fragment
    (0xB1, 0, 0, 14), (0x48, 0, 0, 16),           # x = IP header length; destination port
    (0x15, 0, 1, 68), (0x06, 0, 0, 0x40000), (0x06, 0, 0, 0),
]
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
MAGIC = b"\x63\x82\x53\x63"
BROADCAST_MAC = b"\xff" * 6


class DhcpError(PynetError):
    pass


@dataclass
class Lease:
    mac: str
    ip: str
    prefixlen: int
    server: str
    server_mac: str
    lease_time: int
    t1: int
    t2: int
    acquired: float  # epoch seconds of the last ACK
    router: str = ""
    hostname: str = ""
    renewals: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def expires(self) -> float:
        return self.acquired + self.lease_time


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def _mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def build(msg_type: int, xid: int, mac: str, *, ciaddr: str = "0.0.0.0", requested: str = "",
          server: str = "", hostname: str = "", broadcast: bool = True) -> bytes:
    """The DHCP payload (BOOTP header + options)."""
    chaddr = _mac_bytes(mac)
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000 if broadcast else 0,
                         socket.inet_aton(ciaddr), b"\0" * 4, b"\0" * 4, b"\0" * 4, chaddr.ljust(16, b"\0"),
                         b"", b"")
    opts = bytes([53, 1, msg_type]) + bytes([61, 7, 1]) + chaddr
    if requested:
        opts += bytes([50, 4]) + socket.inet_aton(requested)
    if server:
        opts += bytes([54, 4]) + socket.inet_aton(server)
    if hostname:
        name = hostname.encode()[:63]
        opts += bytes([12, len(name)]) + name
    if msg_type in (DISCOVER, REQUEST):
        opts += bytes([55, 5, 1, 3, 51, 58, 59])
    return header + MAGIC + opts + b"\xff"


def frame(payload: bytes, src_mac: str, *, src_ip: str = "0.0.0.0", dst_ip: str = "255.255.255.255",
          dst_mac: bytes = BROADCAST_MAC) -> bytes:
    udp = struct.pack("!HHHH", 68, 67, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return dst_mac + _mac_bytes(src_mac) + struct.pack("!H", ETH_P_IP) + ip + udp


def parse(data: bytes) -> dict | None:
    """A DHCP reply from an Ethernet frame, or None for anything else."""
    if len(data) < 14 + 20 + 8 + 240 or data[12:14] != b"\x08\x00":
        return None
    ihl = (data[14] & 0x0F) * 4
    if data[14 + 9] != 17:
        return None
    udp = 14 + ihl
    sport, dport = struct.unpack("!HH", data[udp:udp + 4])
    if sport != 67 or dport != 68:
        return None
    p = data[udp + 8:]
    if len(p) < 240 or p[0] != 2 or p[236:240] != MAGIC:
        return None
    out = {"xid": struct.unpack("!I", p[4:8])[0], "yiaddr": socket.inet_ntoa(p[16:20]),
           "chaddr": _mac_str(p[28:34]), "src_mac": _mac_str(data[6:12]), "opts": {}}
    i = 240
    while i < len(p):
        code = p[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(p):
            break
        length = p[i + 1]
        out["opts"][code] = p[i + 2:i + 2 + length]
        i += 2 + length
    t = out["opts"].get(53)
    out["type"] = t[0] if t else 0
    return out


def _attach_filter(s: socket.socket) -> None:
    import ctypes

    prog = b"".join(struct.pack("HBBI", *ins) for ins in BPF_UDP_DST_68)
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = struct.pack("HL", len(BPF_UDP_DST_68), ctypes.addressof(buf))
    s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class Client:
    """One request/response exchange at a time per call; each call opens its own socket."""

    def __init__(self, retries: int = 3, timeout: float = 2.0):
        self.retries = retries
        self.timeout = timeout

    def _socket(self, ifname: str) -> socket.socket:
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            _attach_filter(s)
            s.bind((ifname, ETH_P_ALL))
        except OSError as e:
            raise KernelError(f"cannot open a packet socket on {ifname} for DHCP: {e.strerror}") from None
        s.setblocking(False)
        return s

    async def _exchange(self, ifname: str, packet: bytes, xid: int, want: tuple[int, ...]) -> dict:
        loop = asyncio.get_running_loop()
        s = self._socket(ifname)
        try:
            for _ in range(self.retries):
                await loop.sock_sendall(s, packet)
                deadline = loop.time() + self.timeout
                while (left := deadline - loop.time()) > 0:
                    try:
                        data = await asyncio.wait_for(loop.sock_recv(s, 4096), left)
                    except asyncio.TimeoutError:
                        break
                    reply = parse(data)
                    if reply and reply["xid"] == xid and reply["type"] in want:
                        return reply
        finally:
            s.close()
        raise DhcpError(f"no DHCP server answered on {ifname} ({self.retries} tries, {self.timeout:g} s each); "
                        f"is the LAN's DHCP server reachable from -o parent={ifname}?")

    @staticmethod
    def _lease(reply: dict, mac: str, hostname: str, prefix_default: int) -> Lease:
        o = reply["opts"]
        lease_time = struct.unpack("!I", o[51])[0] if len(o.get(51, b"")) == 4 else 3600
        t1 = struct.unpack("!I", o[58])[0] if len(o.get(58, b"")) == 4 else lease_time // 2
        t2 = struct.unpack("!I", o[59])[0] if len(o.get(59, b"")) == 4 else lease_time * 7 // 8
        mask = o.get(1)
        prefix = ipaddress.ip_network(f"0.0.0.0/{socket.inet_ntoa(mask)}").prefixlen if mask and len(mask) == 4 \
            else prefix_default
        return Lease(mac=mac, ip=reply["yiaddr"], prefixlen=prefix,
                     server=socket.inet_ntoa(o[54]) if len(o.get(54, b"")) == 4 else "",
                     server_mac=reply["src_mac"], lease_time=lease_time, t1=t1, t2=t2, acquired=time.time(),
                     router=socket.inet_ntoa(o[3][:4]) if len(o.get(3, b"")) >= 4 else "", hostname=hostname)

    async def acquire(self, ifname: str, mac: str, hostname: str = "", prefix_default: int = 24) -> Lease:
        xid = int.from_bytes(os.urandom(4), "big")
        offer = await self._exchange(ifname, frame(build(DISCOVER, xid, mac, hostname=hostname), mac), xid, (OFFER,))
        server = socket.inet_ntoa(offer["opts"][54]) if len(offer["opts"].get(54, b"")) == 4 else ""
        req = build(REQUEST, xid, mac, requested=offer["yiaddr"], server=server, hostname=hostname)
        ack = await self._exchange(ifname, frame(req, mac), xid, (ACK, NAK))
        if ack["type"] == NAK:
            raise DhcpError(f"the DHCP server on {ifname} refused the offered address {offer['yiaddr']} (NAK)")
        return self._lease(ack, mac, hostname, prefix_default)

    async def renew(self, ifname: str, lease: Lease, rebind: bool = False) -> Lease:
        """RENEWING (unicast to the server) or REBINDING (broadcast)."""
        xid = int.from_bytes(os.urandom(4), "big")
        payload = build(REQUEST, xid, lease.mac, ciaddr=lease.ip, hostname=lease.hostname, broadcast=False)
        if rebind or not lease.server or not lease.server_mac:
            pkt = frame(payload, lease.mac, src_ip=lease.ip)
        else:
            pkt = frame(payload, lease.mac, src_ip=lease.ip, dst_ip=lease.server, dst_mac=_mac_bytes(lease.server_mac))
        ack = await self._exchange(ifname, pkt, xid, (ACK, NAK))
        if ack["type"] == NAK:
            raise DhcpError(f"the DHCP server refused to renew {lease.ip} for {lease.mac} (NAK)")
        new = self._lease(ack, lease.mac, lease.hostname, lease.prefixlen)
        new.renewals = lease.renewals + 1
        if not new.server:
            new.server, new.server_mac = lease.server, lease.server_mac
        return new

    async def release(self, ifname: str, lease: Lease) -> None:
        """DHCPRELEASE, unicast to the server; no answer is expected."""
        if not lease.server:
            return
        loop = asyncio.get_running_loop()
        xid = int.from_bytes(os.urandom(4), "big")
        payload = build(RELEASE, xid, lease.mac, ciaddr=lease.ip, server=lease.server, broadcast=False)
        dst_mac = _mac_bytes(lease.server_mac) if lease.server_mac else BROADCAST_MAC
        s = self._socket(ifname)
        try:
            await loop.sock_sendall(s, frame(payload, lease.mac, src_ip=lease.ip, dst_ip=lease.server,
                                             dst_mac=dst_mac))
        finally:
            s.close()
