"""Links out of service now, unregistered later (a mixin of Links; the worker is kernel/reaper.py).

What Docker waits on (DeleteEndpoint, DeleteNetwork) must not wait for the kernel's RCU barrier of an
unregister (17-34 ms per batch): a retired link is down at once, so it carries nothing, its bridge
forgets its MACs and its routes go; it sits in the daemon's retired group until the reaper
unregisters it (kernel/reaper.py).
A crash before that leaves it there: the next start unregisters the group (reconcile), and links
carrying pynet's alias that belong to nothing are leftovers anyway.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import logging
import os

from ..errors import KernelError
from .linkinfo import GONE, LinkInfo, sysctl_quiet

DEFAULT_MTU = 1500  # a new bridge's (without ports)


def random_mac() -> str:
    """Locally administered, unicast: what the kernel gives a new bridge, but fixed (a reused bridge
    must not keep the MAC of the network it served)."""
    b = bytearray(os.urandom(6))
    b[0] = (b[0] & 0xFC) | 0x02
    return ":".join(f"{x:02x}" for x in b)


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""

_tombs = itertools.count(1)
log = logging.getLogger("pynet.links")


class RetireOps:
    """Needs `get(name)`, `_nl` (kernel/rawlink.py), `_set(what, ...)`, `_kernel(what, fn, ...)`,
    `prefix` and `reaper` from the class it is mixed into."""

    async def retire(self, name: str, peer: str = "") -> None:
        """Out of service now (one request: down, into the retired group), unregistered later in the
        background; `peer` (a veth's other end) goes with it. Its bridge forgets its MACs and its
        routes go at once; a name asked for again meanwhile is freed first (get)."""
        if await self._set(f"retire {name}", name=name, up=False, group=self.reaper.group, ok_errnos=GONE):
            self.reaper.retired(name, peer)

    async def retire_bridge(self, name: str, addrs: list[str]) -> None:
        """A bridge out of service now: down, renamed to a tombstone (its name is free at once, e.g. a
        custom bridge_name made again) and its addresses `addrs` removed (the subnet is free too)."""
        link = await self.get(name)
        if link is None:
            return
        tomb = self.tomb_name()
        kw = dict(index=link.index, up=False, group=self.reaper.group + 1)
        try:
            await self._set(f"retire {name}", ifname=tomb, **kw)
        except KernelError:  # kernels before 6.2 rename no link that is up
            await self._set(f"retire {name}", **kw)
            await self._set(f"retire {name}", index=link.index, ifname=tomb)
        self.reaper.retired(tomb, bridge=True)
        for cidr in addrs:
            ip = ipaddress.ip_interface(cidr)
            await self._kernel(f"remove address {cidr} from {name}", self._nl.address, False, link.index,
                               str(ip.ip), ip.network.prefixlen, ok_errnos=(errno.EADDRNOTAVAIL, errno.ENODEV))

    async def reuse_bridge(self, name: str, alias: str, mtu: int, ipv6: bool, mac: str) -> LinkInfo | None:
        """A retired bridge not yet unregistered, made bridge `name` again (None when there is none).

        Unregistering a bridge holds the host's RTNL lock for an RCU barrier (br_multicast_dev_del,
        15-20 ms here) that every netlink request on the host waits behind; a network made while
        another is being removed (compose down/up, CI) takes the retired one instead: renamed, out of
        the retired group, everything ensure_bridge sets set anew (alias, MTU, MAC, IPv6 on or off).
        It carries nothing: down, no address (retire_bridge), its old ports down and retired."""
        tomb = self.reaper.reuse()
        if tomb is None:
            return None
        try:  # not get(): that would unregister it first (reaper.take)
            old = await self._kernel(f"look up retired bridge {tomb}", self._nl.get, tomb)
        except KernelError as e:
            log.warning("retired bridge not reused", extra={"fields": {"bridge": tomb, "error": str(e)}})
            self.reaper.retired(tomb, bridge=True)  # back to the reaper: unregistered as planned
            return None
        if old is None or old.kind != "bridge":
            return None  # gone meanwhile (or not a bridge: a tombstone name is this daemon's, never reused)
        try:
            await self._set(f"reuse {tomb} as {name}", index=old.index, ifname=name, group=0, alias=alias,
                            mtu=mtu or DEFAULT_MTU, mac=mac or random_mac())
        except KernelError:
            self.reaper.retired(tomb, bridge=True)  # unregistered as planned; a new bridge is made instead
            return None
        default = _read("/proc/sys/net/ipv6/conf/default/disable_ipv6") or "0"
        sysctl_quiet(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "0" if ipv6 else default)
        return await self.get(name)

    def tomb_name(self) -> str:
        """A retired bridge's new name: the daemon's prefix (its leftover sweeps and the tests' know it),
        "z", then 7 hex digits of pid and count (a name unique among this run's pending bridges)."""
        return f"{self.prefix}z{(os.getpid() << 12 | next(_tombs) & 0xFFF) & 0xFFFFFFF:07x}"[:15]

    def retiring(self) -> set[str]:
        """Names of the links retired and not yet unregistered."""
        return set(self.reaper.pending)

    async def settle(self) -> None:
        """Every retired link unregistered now (one request), an earlier run's left in the group too."""
        await self.reaper.settle()
