"""Links out of service now, unregistered later (a mixin of Links; the worker is kernel/reaper.py).

What Docker waits on (DeleteEndpoint, DeleteNetwork) must not wait for the kernel's RCU barrier of an
unregister (17-34 ms per batch): a retired link is down at once, so it carries nothing, its bridge
forgets its MACs and its routes go; it sits in RETIRED_GROUP until the reaper unregisters the group.
A crash before that leaves it there: the next start unregisters the group (reconcile), and links
carrying pynet's alias that belong to nothing are leftovers anyway.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import os

from ..errors import KernelError
from .reaper import RETIRED_GROUP

_tombs = itertools.count(1)


class RetireOps:
    """Needs `get(name)`, `_call(what, method, ...)` and `reaper` from the class it is mixed into."""

    async def retire(self, name: str, peer: str = "") -> None:
        """Out of service now (one request: down, into the retired group), unregistered later in the
        background; `peer` (a veth's other end) goes with it. Its bridge forgets its MACs and its
        routes go at once; a name asked for again meanwhile is freed first (get)."""
        if await self._call(f"retire {name}", "link", "set", ifname=name, state="down", group=RETIRED_GROUP,
                            ok_errnos=(errno.ENODEV,)) is not None:
            self.reaper.retired(name, peer)

    async def retire_bridge(self, name: str, addrs: list[str]) -> None:
        """A bridge out of service now: down, renamed to a tombstone (its name is free at once, e.g. a
        custom bridge_name made again) and its addresses `addrs` removed (the subnet is free too)."""
        link = await self.get(name)
        if link is None:
            return
        tomb = f"pnz{os.getpid() % 100000}.{next(_tombs)}"[:15]
        kw = dict(index=link.index, state="down", group=RETIRED_GROUP)
        try:
            await self._call(f"retire {name}", "link", "set", ifname=tomb, **kw)
        except KernelError:  # kernels before 6.2 rename no link that is up
            await self._call(f"retire {name}", "link", "set", **kw)
            await self._call(f"retire {name}", "link", "set", index=link.index, ifname=tomb)
        self.reaper.retired(tomb)
        for cidr in addrs:
            ip = ipaddress.ip_interface(cidr)
            await self._call(f"remove address {cidr} from {name}", "addr", "del", index=link.index,
                             address=str(ip.ip), prefixlen=ip.network.prefixlen,
                             ok_errnos=(errno.EADDRNOTAVAIL, errno.ENODEV))

    def retiring(self) -> set[str]:
        """Names of the links retired and not yet unregistered."""
        return set(self.reaper.pending)

    async def settle(self) -> None:
        """Every retired link unregistered now (one request), an earlier run's left in the group too."""
        await self.reaper.settle()
