"""pynet's IPAM driver: container addresses from the LAN's own DHCP server (transparent mode).

Docker asks the IPAM driver for an address before CreateEndpoint, passing the MAC it
generated (RequiresMACAddress). pynet then runs DISCOVER/REQUEST with that MAC on the
network's parent, keeps the lease in the network's state, renews it in the background
(core/leases.py, also after a pynet restart) and releases it when Docker releases the
address. The gateway and --ip addresses are static.
"""

from __future__ import annotations

import ipaddress
import logging

from .. import options
from ..errors import InvalidOption, InvalidRequest, NotFound
from ..model import Network

log = logging.getLogger("pynet.ipam")


class Ipam:
    def __init__(self, state, leases):
        self.state = state
        self.leases = leases

    @staticmethod
    def capabilities() -> dict:
        return {"RequiresMACAddress": True, "RequiresRequestReplay": False}

    @staticmethod
    def default_spaces() -> dict:
        return {"LocalDefaultAddressSpace": options.DHCP_SPACE, "GlobalDefaultAddressSpace": options.DHCP_SPACE}

    @staticmethod
    def request_pool(req) -> tuple[str, str]:
        """(PoolID, pool) for --ipam-driver pynet --subnet <the LAN's subnet>."""
        if req.v6:
            raise InvalidOption("--ipam-driver pynet does DHCPv4 only: leave out --ipv6 (or use the default IPAM)")
        if not req.pool:
            raise InvalidOption("--ipam-driver pynet needs --subnet <the LAN's subnet> (e.g. 192.168.1.0/24)")
        if req.sub_pool:
            raise InvalidOption("--ip-range has no meaning with --ipam-driver pynet: the DHCP server's range decides")
        try:
            net = ipaddress.ip_network(req.pool, strict=False)
        except ValueError:
            raise InvalidOption(f"--subnet {req.pool!r} is not an IPv4 prefix") from None
        if net.version != 4:
            raise InvalidOption(f"--subnet {req.pool} is not IPv4")
        return f"{options.DHCP_SPACE}/{net}", str(net)

    @staticmethod
    def _pool(pool_id: str) -> ipaddress.IPv4Network:
        if not pool_id.startswith(options.DHCP_SPACE + "/"):
            raise InvalidRequest(f"PoolID {pool_id!r} is not one of pynet's")
        try:
            return ipaddress.ip_network(pool_id.split("/", 1)[1])
        except ValueError:
            raise InvalidRequest(f"PoolID {pool_id!r} is not one of pynet's") from None

    def _network(self, pool: ipaddress.IPv4Network) -> Network:
        for net in self.state.nets.values():
            if net.ipam == "dhcp" and net.v4 and ipaddress.ip_network(net.v4[0].pool) == pool:
                return net
        raise NotFound(f"no pynet network uses the DHCP pool {pool}; create it with "
                       f"-o mode=transparent -o parent=IFACE --ipam-driver pynet --subnet {pool}")

    async def request_address(self, req) -> str:
        """The address (CIDR) for Docker: static ones as asked, a container's from the LAN's server."""
        pool = self._pool(req.pool_id)
        if req.gateway or req.address:
            try:
                ip = ipaddress.ip_address(req.address) if req.address else pool.network_address + 1
            except ValueError:
                raise InvalidOption(f"address {req.address!r} is not an IP address") from None
            if ip not in pool:
                raise InvalidOption(f"address {ip} is not inside --subnet {pool}")
            return f"{ip}/{pool.prefixlen}"
        mac = options.valid_mac(req.mac) if req.mac else ""
        if not mac:
            raise InvalidRequest("Docker sent no MAC address for the DHCP request")
        net = self._network(pool)
        held = net.leases.get(mac)
        if held:
            return f"{held['ip']}/{held['prefixlen']}"
        # The exchange runs outside the network's lock: a silent server holds up nothing else.
        lease = await self.leases.client.acquire(net.parent, mac, prefix_default=pool.prefixlen)
        if ipaddress.ip_address(lease.ip) not in pool:
            await self.leases.client.release(net.parent, lease)
            raise InvalidOption(f"the DHCP server on {net.parent} offered {lease.ip}, outside --subnet {pool}; "
                                f"give the network the LAN's real subnet")
        async with self.state.lock(net.id):
            if mac in net.leases:  # a concurrent request for the same MAC won: keep one lease
                await self.leases.client.release(net.parent, lease)
                held = net.leases[mac]
                return f"{held['ip']}/{held['prefixlen']}"
            net.leases[mac] = lease.to_dict()
            try:
                self.state.save(net)
            except BaseException:
                net.leases.pop(mac, None)
                await self.leases.client.release(net.parent, lease)
                raise
        log.info("lease acquired", extra={"fields": {"mac": mac, "ip": lease.ip, "server": lease.server,
                                                     "lease_s": lease.lease_time}})
        self.leases.start(net.id, mac)
        return f"{lease.ip}/{lease.prefixlen}"

    async def release_address(self, req) -> None:
        pool = self._pool(req.pool_id)
        try:
            net = self._network(pool)
        except NotFound:
            return
        async with self.state.locked(net.id) as known:
            if not known:
                return
            for mac, held in list(net.leases.items()):
                if held["ip"] == req.address.split("/")[0]:
                    await self.leases.release(net, mac)
                    self.state.save(net)
