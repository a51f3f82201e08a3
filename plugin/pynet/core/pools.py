"""pynet's IPAM pools: what `--ipam-driver pynet` was asked for, from before the network exists.

Docker asks the IPAM driver for a pool (RequestPool: --subnet, --ip-range, --ipam-opt), then for the
gateway and each --aux-address (RequestAddress), and only then creates the network (CreateNetwork
carries the pool but not the IPAM options). So each pool is a record here, bound to its network at
CreateNetwork (Ipam.claim), kept in state_dir/ipam.json: the mode that hands out its addresses (dhcp,
static, slaac) and the addresses reserved in it (the gateway, --aux-address, --ip, and those the
static allocator gave out, by MAC). Docker releases the addresses and the pool before DeleteNetwork.

Pool IDs are "pynet-dhcp/<subnet>@<token>": unique, so two `docker network create` of one subnet
never share a record (the second is refused at CreateNetwork, and its ReleasePool drops only its own).
An ID without "@" (earlier pynet versions) is a DHCP pool of the network with that subnet. If
ipam.json is lost or damaged, the networks' own state still says which mode serves them, and the
allocator skips every address their endpoints, gateways and leases hold.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import time
from dataclasses import dataclass, field

from .. import options
from ..errors import InvalidRequest

log = logging.getLogger("pynet.pools")
MODES4 = ("dhcp", "static")
MODES6 = ("dhcp", "slaac", "static")
STALE_AFTER = 3600.0  # a pool no network claimed for this long was left by a create that never finished


@dataclass
class Pool:
    id: str
    subnet: str
    range: str = ""  # --ip-range (static pools)
    mode: str = "dhcp"
    network_id: str = ""
    created: float = 0.0
    reserved: dict = field(default_factory=dict)  # IP -> "gateway" | "aux" | the MAC it was given to

    @property
    def net(self):
        return ipaddress.ip_network(self.subnet)


def legacy(pool_id: str) -> Pool:
    """The record an ID without one stands for: a DHCP pool (pynet before pool records)."""
    if not pool_id.startswith(options.DHCP_SPACE + "/"):
        raise InvalidRequest(f"PoolID {pool_id!r} is not one of pynet's")
    text = pool_id.split("/", 1)[1].split("@", 1)[0]
    try:
        subnet = ipaddress.ip_network(text)
    except ValueError:
        raise InvalidRequest(f"PoolID {pool_id!r} is not one of pynet's") from None
    return Pool(id=pool_id, subnet=str(subnet))


def candidates(pool: Pool, taken: set[str]):
    """Addresses of the pool's range (else its subnet) a container may get, lowest first: not the subnet's
    network or broadcast address (IPv6: not its subnet-router anycast), nor any in `taken`."""
    subnet = pool.net
    span = ipaddress.ip_network(pool.range) if pool.range else subnet
    never = {subnet.network_address} | ({subnet.broadcast_address} if subnet.version == 4 else set())
    first, last = int(span.network_address), int(span.broadcast_address)
    for n in range(first, last + 1):
        ip = ipaddress.ip_address(n)
        if ip not in never and str(ip) not in taken:
            yield str(ip)


class PoolBook:
    def __init__(self, store):
        self.store = store
        self.pools: dict[str, Pool] = {}

    def load(self, now: float | None = None) -> None:
        raw = self.store.load_doc("ipam").get("pools", {})
        pools = {}
        for pool_id, d in raw.items() if isinstance(raw, dict) else ():
            try:
                pools[pool_id] = Pool(**d)
            except TypeError as e:
                log.error("IPAM pool record unreadable, dropped", extra={"fields": {"pool": pool_id, "error": str(e)}})
        now = time.time() if now is None else now
        stale = [p.id for p in pools.values() if not p.network_id and now - p.created > STALE_AFTER]
        for pool_id in stale:
            log.warning("IPAM pool dropped: no network claimed it", extra={"fields": {"pool": pool_id}})
            del pools[pool_id]
        self.pools = pools
        if stale:
            self.save()

    def save(self) -> None:
        self.store.save_doc("ipam", {"pools": {k: dataclasses.asdict(v) for k, v in self.pools.items()}})

    def new(self, subnet: str, span: str, mode: str) -> Pool:
        pool = Pool(id=f"{options.DHCP_SPACE}/{subnet}@{os.urandom(4).hex()}", subnet=subnet, range=span, mode=mode,
                    created=time.time())
        self.pools[pool.id] = pool
        try:
            self.save()
        except BaseException:
            del self.pools[pool.id]
            raise
        return pool

    def get(self, pool_id: str) -> Pool | None:
        return self.pools.get(pool_id)

    def drop(self, pool_id: str) -> None:
        if self.pools.pop(pool_id, None) is not None:
            self.save()

    def claim(self, net_id: str, subnet: str) -> Pool | None:
        """The pool a new network of `subnet` was made from: bound to it already (a retry), else the
        newest one no network has claimed."""
        same = [p for p in self.pools.values() if p.subnet == str(ipaddress.ip_network(subnet))
                and p.network_id in ("", net_id)]
        if not same:
            return None
        same.sort(key=lambda p: (p.network_id == net_id, p.created))
        return same[-1]

    def of_network(self, net_id: str) -> list[Pool]:
        return [p for p in self.pools.values() if p.network_id == net_id]
