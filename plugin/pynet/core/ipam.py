"""pynet's IPAM driver (`--ipam-driver pynet`): LAN addresses that never collide.

How a user asks (`--ipam-opt`, given to RequestPool; one network's IPv4 and IPv6 pools share them):
  mode=dhcp (default)  IPv4 from the LAN's DHCP server (transparent mode)
  mode=static          IPv4 from --subnet / --ip-range, chosen by pynet (transparent and l2bridge)
  mode6=dhcp|slaac|static  IPv6 (default: as mode): DHCPv6 IA_NA, the LAN router's SLAAC prefix
                       (transparent), or chosen by pynet from --subnet / --ip-range
Every address pynet chooses or is given by a server skips the host's own addresses and is probed on
the parent first (core/guard.py): static pools try the next free address, DHCP declines and asks
again, SLAAC refuses. The gateway, --aux-address and --ip are reserved as asked. Pools and their
reservations persist (core/pools.py); leases are kept and renewed by core/leases.py. Docker passes
the MAC it chose (RequiresMACAddress) and, from Docker 29, the endpoint's name (core/acquire.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from .. import options
from ..errors import Conflict, InvalidOption, InvalidRequest, NotFound
from ..model import Network
from .pools import MODES4, MODES6, Pool, PoolBook, candidates, legacy

log = logging.getLogger("pynet.ipam")
KNOWN = {"mode": "dhcp or static", "mode6": "dhcp, slaac or static"}
TRIES = 16  # addresses a static pool tries per request when the first ones answer probes


class Ipam:
    def __init__(self, state, leases, acquirer, guard):
        self.state = state
        self.leases = leases
        self.acquirer = acquirer
        self.guard = guard
        self.book = PoolBook(state.store)
        self.lock = asyncio.Lock()  # the book: reservations are taken and given back under it
        self.pending: set[tuple[str, str]] = set()  # (pool ID, IP) being probed for a request

    def load(self) -> None:
        self.book.load()

    @staticmethod
    def capabilities() -> dict:
        return {"RequiresMACAddress": True, "RequiresRequestReplay": False}

    @staticmethod
    def default_spaces() -> dict:
        return {"LocalDefaultAddressSpace": options.DHCP_SPACE, "GlobalDefaultAddressSpace": options.DHCP_SPACE}

    # ------------------------------------------------------------ pools
    @staticmethod
    def _pool_mode(req) -> str:
        opts = {k: str(v).strip().lower() for k, v in req.options.items() if not k.startswith("com.docker.")}
        for key in opts:
            if key not in KNOWN:
                raise InvalidOption(f"unknown --ipam-opt {key!r}; pynet's IPAM knows "
                                    + ", ".join(f"{k} ({v})" for k, v in KNOWN.items()))
        mode = opts.get("mode6", opts.get("mode", "dhcp")) if req.v6 else opts.get("mode", "dhcp")
        allowed = MODES6 if req.v6 else MODES4
        if mode not in allowed:
            key = "mode6" if req.v6 and "mode6" in opts else "mode"
            raise InvalidOption(f"--ipam-opt {key}={mode!r} is not possible for IPv{6 if req.v6 else 4}; use "
                                f"{' or '.join(allowed)}")
        return mode

    async def request_pool(self, req) -> tuple[str, str]:
        """(PoolID, pool) for --ipam-driver pynet --subnet <the LAN's subnet> [--ip-range] [--ipam-opt]."""
        mode = self._pool_mode(req)
        family = 6 if req.v6 else 4
        if not req.pool:
            raise InvalidOption(f"--ipam-driver pynet needs --subnet <the LAN's IPv{family} subnet>")
        try:
            net = ipaddress.ip_network(req.pool, strict=False)
        except ValueError:
            raise InvalidOption(f"--subnet {req.pool!r} is not an IP prefix") from None
        if net.version != family:
            raise InvalidOption(f"--subnet {req.pool} is not IPv{family}")
        span = ""
        if req.sub_pool:
            if mode != "static":
                raise InvalidOption(f"--ip-range has no meaning with --ipam-driver pynet mode {mode}: the LAN's "
                                    f"{'router' if mode == 'slaac' else 'DHCP server'} decides; use --ipam-opt "
                                    f"mode{'6' if req.v6 else ''}=static for pynet to choose from --ip-range")
            try:
                rng = ipaddress.ip_network(req.sub_pool, strict=False)
            except ValueError:
                raise InvalidOption(f"--ip-range {req.sub_pool!r} is not an IP prefix") from None
            if rng.version != family or not rng.subnet_of(net):
                raise InvalidOption(f"--ip-range {req.sub_pool} is not inside --subnet {net}")
            span = str(rng)
        if mode == "slaac" and net.prefixlen != 64:
            raise InvalidOption(f"SLAAC needs the LAN's /64 as --subnet, not {net}")
        async with self.lock:
            pool = self.book.new(str(net), span, mode)
        log.info("pool", extra={"fields": {"pool": pool.id, "mode": mode, "range": span}})
        return pool.id, str(net)

    async def release_pool(self, pool_id: str) -> None:
        async with self.lock:
            self.book.drop(pool_id)

    def claim(self, net: Network, mode) -> None:
        """CreateNetwork: which IPAM mode serves each family of `net`, and its pools bound to it."""
        bound = False
        for subs, attr in ((net.v4, "ipam"), (net.v6, "ipam6")):
            if not getattr(net, attr):
                continue  # not pynet's address space
            pool = self.book.claim(net.id, subs[0].pool)
            which = pool.mode if pool else "dhcp"
            if not mode.lan:
                raise InvalidOption(f"--ipam-driver pynet is for the LAN modes (transparent, l2bridge), not "
                                    f"mode={mode.NAME}")
            if which in ("dhcp", "slaac") and not mode.dhcp:
                raise InvalidOption(f"--ipam-driver pynet with {which.upper()} needs mode=transparent (the "
                                    f"container's own MAC on the LAN), not mode={mode.NAME}; use --ipam-opt "
                                    f"mode{'6' if attr == 'ipam6' else ''}=static")
            setattr(net, attr, which)
            if pool is not None and pool.network_id != net.id:
                pool.network_id, bound = net.id, True
        if bound:
            self.book.save()

    def _pool(self, pool_id: str) -> Pool:
        return self.book.get(pool_id) or legacy(pool_id)

    def _network(self, pool: Pool) -> Network:
        if pool.network_id and pool.network_id in self.state.nets:
            return self.state.nets[pool.network_id]
        subnet = pool.net
        for net in self.state.nets.values():
            subs = net.v4 if subnet.version == 4 else net.v6
            if (net.ipam if subnet.version == 4 else net.ipam6) and subs and ipaddress.ip_network(subs[0].pool) == subnet:
                return net
        raise NotFound(f"no pynet network uses the pool {subnet}; create it with -o mode=transparent "
                       f"-o parent=IFACE --ipam-driver pynet --subnet {subnet}")

    # ------------------------------------------------------------ addresses
    async def request_address(self, req) -> str:
        """The address (CIDR) for Docker: static ones as asked, a container's by the pool's mode."""
        pool = self._pool(req.pool_id)
        subnet = pool.net
        if req.gateway or req.address:
            return await self._reserve(pool, req)
        mac = options.valid_mac(req.mac) if req.mac else ""
        if not mac:
            raise InvalidRequest("Docker sent no MAC address for the address request")
        net = self._network(pool)
        if pool.mode == "static":
            return await self._allocate(pool, net, mac)
        if pool.mode == "slaac":
            cidr = await self.acquirer.slaac(net, subnet, mac)
            async with self.lock:
                pool.reserved[cidr.split("/")[0]] = mac
                self._save(pool)
            return cidr
        v = subnet.version
        held = self.leases.table(net, v).get(mac)
        if held:
            return f"{held['ip']}/{held['prefixlen']}"
        # The exchange runs outside every lock: a silent server holds up nothing else.
        get = self.acquirer.dhcp4 if v == 4 else self.acquirer.dhcp6
        lease = await get(net, subnet, mac, req.name)
        return await self.leases.keep(net, lease, v)

    def _save(self, pool: Pool) -> None:
        if self.book.get(pool.id) is pool:
            self.book.save()

    async def _reserve(self, pool: Pool, req) -> str:
        """The gateway, an --aux-address or an --ip: as asked, reserved (a container's --ip is probed in
        CreateEndpoint, like any static address)."""
        subnet = pool.net
        try:
            ip = ipaddress.ip_address(req.address) if req.address else subnet.network_address + 1
        except ValueError:
            raise InvalidOption(f"address {req.address!r} is not an IP address") from None
        if ip not in subnet:
            raise InvalidOption(f"address {ip} is not inside --subnet {subnet}")
        holder = "gateway" if req.gateway else (options.valid_mac(req.mac) if req.mac else "aux")
        async with self.lock:
            other = pool.reserved.get(str(ip))
            if other and other != holder and ":" in holder:
                raise Conflict(f"address {ip} is already taken in {subnet} ({other}); give the container "
                               f"another --ip")
            pool.reserved[str(ip)] = holder
            self._save(pool)
        return f"{ip}/{subnet.prefixlen}"

    def _taken(self, pool: Pool, net: Network) -> set[str]:
        """What a static pool must not hand out besides its reservations: addresses being probed, the
        network's gateways, its endpoints' addresses and leases (also when ipam.json was lost)."""
        taken = set(pool.reserved) | {ip for pid, ip in self.pending if pid == pool.id}
        taken |= {str(ipaddress.ip_interface(g).ip) for g in net.gateways()}
        for ep in net.endpoints.values():
            taken |= {str(ipaddress.ip_interface(a).ip) for a in (ep.ipv4, ep.ipv6) if a}
        return taken

    async def _allocate(self, pool: Pool, net: Network, mac: str) -> str:
        prefix = pool.net.prefixlen
        skipped: dict[str, str] = {}
        host = await self.guard.host_addresses()
        for _ in range(TRIES):
            async with self.lock:
                mine = [ip for ip, holder in pool.reserved.items() if holder == mac]
                if mine:  # Docker asks again for the same container
                    return f"{mine[0]}/{prefix}"
                ip = next(candidates(pool, self._taken(pool, net) | host | set(skipped)), None)
                if ip is None:
                    raise Conflict(f"no free address left in {pool.range or pool.subnet}"
                                   + (f" (in use on the LAN: {', '.join(f'{k} by {v}' for k, v in skipped.items())})"
                                      if skipped else "") + "; give the network a larger --ip-range")
                self.pending.add((pool.id, ip))
            try:
                answer = await self.guard.probe(net, ip)
            finally:
                self.pending.discard((pool.id, ip))
            if answer:
                log.warning("address skipped: in use on the LAN", extra={"fields": {"ip": ip, "answer": answer}})
                skipped[ip] = answer
                continue
            async with self.lock:
                pool.reserved[ip] = mac
                try:
                    self._save(pool)
                except BaseException:
                    pool.reserved.pop(ip, None)
                    raise
            self.guard.mark(net, ip)
            return f"{ip}/{prefix}"
        raise Conflict(f"the first {TRIES} free addresses of {pool.range or pool.subnet} are in use on the LAN "
                       f"({', '.join(f'{k} by {v}' for k, v in skipped.items())}); give the network an --ip-range "
                       f"the LAN does not use")

    async def release_address(self, req) -> None:
        pool = self._pool(req.pool_id)  # a malformed ID is refused by name; an unknown one is released
        ip = req.address.split("/")[0]
        async with self.lock:
            if pool.reserved.pop(ip, None) is not None:
                self._save(pool)
        if pool.mode != "dhcp":
            return
        try:
            net = self._network(pool)
        except NotFound:
            return
        async with self.state.locked(net.id) as known:
            if known:
                await self.leases.release_ip(net, ip, pool.net.version)
