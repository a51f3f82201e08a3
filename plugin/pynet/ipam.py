"""pynet's IPAM driver: container addresses from the LAN's own DHCP server (transparent mode).

Docker asks the IPAM driver for an address before CreateEndpoint, passing the
MAC it generated (RequiresMACAddress). pynet then runs DISCOVER/REQUEST with
that MAC on the network's parent, keeps the lease in the network's state,
renews it in the background (also after a pynet restart) and releases it when
Docker releases the address. The gateway and --ip addresses are static.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time

from . import dhcp, options
from .errors import InvalidOption, InvalidRequest, NotFound
from .model import Network

log = logging.getLogger("pynet.ipam")
GATEWAY = "com.docker.network.gateway"
MAC_OPT = "com.docker.network.endpoint.macaddress"


class DhcpIpam:
    def __init__(self, service, client: dhcp.Client | None = None):
        self.svc = service
        self.client = client or dhcp.Client()
        self.tasks: dict[str, asyncio.Task] = {}  # MAC -> renew loop

    # -------------------------------------------------------------- protocol
    async def capabilities(self, _body: dict) -> dict:
        return {"RequiresMACAddress": True, "RequiresRequestReplay": False}

    async def default_spaces(self, _body: dict) -> dict:
        return {"LocalDefaultAddressSpace": options.DHCP_SPACE, "GlobalDefaultAddressSpace": options.DHCP_SPACE}

    async def request_pool(self, body: dict) -> dict:
        if body.get("V6"):
            raise InvalidOption("--ipam-driver pynet does DHCPv4 only: leave out --ipv6 (or use the default IPAM)")
        pool = body.get("Pool") or ""
        if not pool:
            raise InvalidOption("--ipam-driver pynet needs --subnet <the LAN's subnet> (e.g. 192.168.1.0/24)")
        if body.get("SubPool"):
            raise InvalidOption("--ip-range has no meaning with --ipam-driver pynet: the DHCP server's range decides")
        try:
            net = ipaddress.ip_network(pool, strict=False)
        except ValueError:
            raise InvalidOption(f"--subnet {pool!r} is not an IPv4 prefix") from None
        if net.version != 4:
            raise InvalidOption(f"--subnet {pool} is not IPv4")
        return {"PoolID": f"{options.DHCP_SPACE}/{net}", "Pool": str(net), "Data": {}}

    async def release_pool(self, _body: dict) -> dict:
        return {}

    def _pool(self, body: dict) -> ipaddress.IPv4Network:
        pool_id = body.get("PoolID")
        if not isinstance(pool_id, str) or not pool_id.startswith(options.DHCP_SPACE + "/"):
            raise InvalidRequest(f"PoolID {pool_id!r} is not one of pynet's")
        try:
            return ipaddress.ip_network(pool_id.split("/", 1)[1])
        except ValueError:
            raise InvalidRequest(f"PoolID {pool_id!r} is not one of pynet's") from None

    def _network(self, pool: ipaddress.IPv4Network) -> Network:
        for net in self.svc.nets.values():
            if net.ipam == "dhcp" and net.v4 and ipaddress.ip_network(net.v4[0].pool) == pool:
                return net
        raise NotFound(f"no pynet network uses the DHCP pool {pool}; create it with "
                       f"-o mode=transparent -o parent=IFACE --ipam-driver pynet --subnet {pool}")

    async def request_address(self, body: dict) -> dict:
        pool = self._pool(body)
        opts = body.get("Options") or {}
        if not isinstance(opts, dict):
            raise InvalidRequest("Options must be an object")
        static = body.get("Address") or ""
        if opts.get("RequestAddressType") == GATEWAY or static:
            try:
                ip = ipaddress.ip_address(static) if static else pool.network_address + 1
            except ValueError:
                raise InvalidOption(f"address {static!r} is not an IP address") from None
            if ip not in pool:
                raise InvalidOption(f"address {ip} is not inside --subnet {pool}")
            return {"Address": f"{ip}/{pool.prefixlen}", "Data": {}}
        mac = opts.get(MAC_OPT) or ""
        mac = options.valid_mac(mac) if mac else ""
        if not mac:
            raise InvalidRequest("Docker sent no MAC address for the DHCP request")
        net = self._network(pool)
        async with self.svc.lock(net.id):
            held = net.leases.get(mac)
            if held:
                return {"Address": f"{held['ip']}/{held['prefixlen']}", "Data": {}}
            lease = await self.client.acquire(net.parent, mac, prefix_default=pool.prefixlen)
            if ipaddress.ip_address(lease.ip) not in pool:
                await self.client.release(net.parent, lease)
                raise InvalidOption(f"the DHCP server on {net.parent} offered {lease.ip}, outside --subnet {pool}; "
                                    f"give the network the LAN's real subnet")
            net.leases[mac] = lease.to_dict()
            try:
                self.svc.store.save(net)
            except BaseException:
                net.leases.pop(mac, None)
                await self.client.release(net.parent, lease)
                raise
        log.info("lease acquired", extra={"fields": {"mac": mac, "ip": lease.ip, "server": lease.server,
                                                     "lease_s": lease.lease_time}})
        self.start_renewal(net.id, mac)
        return {"Address": f"{lease.ip}/{lease.prefixlen}", "Data": {}}

    async def release_address(self, body: dict) -> dict:
        pool = self._pool(body)
        address = body.get("Address") or ""
        if not isinstance(address, str):
            raise InvalidRequest(f"Address must be a string, got {address!r}")
        try:
            net = self._network(pool)
        except NotFound:
            return {}
        async with self.svc.lock(net.id):
            for mac, held in list(net.leases.items()):
                if held["ip"] == address.split("/")[0]:
                    self.stop_renewal(mac)
                    lease = dhcp.Lease(**held)
                    try:
                        await self.client.release(net.parent, lease)
                    except Exception as e:  # noqa: BLE001 - the lease is forgotten anyway
                        log.warning("DHCP release failed", extra={"fields": {"mac": mac, "error": str(e)}})
                    del net.leases[mac]
                    self.svc.store.save(net)
                    log.info("lease released", extra={"fields": {"mac": mac, "ip": lease.ip}})
        return {}

    # -------------------------------------------------------------- background
    def start_all(self) -> None:
        for net in self.svc.nets.values():
            for mac in net.leases:
                self.start_renewal(net.id, mac)

    def start_renewal(self, net_id: str, mac: str) -> None:
        self.stop_renewal(mac)
        self.tasks[mac] = asyncio.create_task(self._renew_loop(net_id, mac), name=f"dhcp-renew-{mac}")

    def stop_renewal(self, mac: str) -> None:
        task = self.tasks.pop(mac, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def renew_now(self, net_id: str, mac: str, hostname: str | None = None) -> dhcp.Lease:
        net = self.svc.network(net_id)
        async with self.svc.lock(net_id):
            held = net.leases.get(mac)
            if held is None:
                raise NotFound(f"no DHCP lease for {mac}")
            lease = dhcp.Lease(**held)
            if hostname is not None:
                lease.hostname = hostname
            rebind = time.time() > lease.acquired + lease.t2
            new = await self.client.renew(net.parent, lease, rebind=rebind)
            if mac in net.leases:  # not released meanwhile
                net.leases[mac] = new.to_dict()
                self.svc.store.save(net)
        log.info("lease renewed", extra={"fields": {"mac": mac, "ip": new.ip, "renewals": new.renewals}})
        return new

    async def _renew_loop(self, net_id: str, mac: str) -> None:
        retry = 0
        while True:
            net = self.svc.nets.get(net_id)
            if net is None or mac not in net.leases:
                return
            lease = dhcp.Lease(**net.leases[mac])
            after = self.svc.cfg.dhcp_renew_after or lease.t1
            delay = lease.acquired + after - time.time() if not retry else min(30.0, 2.0 * retry)
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                await self.renew_now(net_id, mac)
                retry = 0
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - keep trying until the lease runs out
                retry += 1
                level = logging.ERROR if time.time() > lease.expires else logging.WARNING
                log.log(level, "DHCP renewal failed", extra={"fields": {"mac": mac, "ip": lease.ip, "error": str(e),
                                                                        "expired": time.time() > lease.expires}})

    async def announce_hostname(self, net_id: str, mac: str, sandbox: str, timeout: float = 30.0) -> None:
        """After Join: find the container's hostname (its namespace's first process) and renew with it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            name = _hostname_in_netns(sandbox)
            if name:
                try:
                    await self.renew_now(net_id, mac, hostname=name)
                except Exception as e:  # noqa: BLE001
                    log.warning("hostname announce failed", extra={"fields": {"mac": mac, "error": str(e)}})
                return
            await asyncio.sleep(0.5)


def _hostname_in_netns(sandbox: str) -> str:
    try:
        ino = os.stat(sandbox).st_ino
    except OSError:
        return ""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino != ino:
                continue
            with open(f"/proc/{pid}/root/etc/hostname") as fh:
                return fh.read().strip()
        except OSError:
            continue
    return ""
