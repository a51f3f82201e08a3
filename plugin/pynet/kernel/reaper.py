"""Links unregistered off the event loop: one worker thread with its own netlink socket.

Unregistering a link waits for an RCU barrier inside the netlink sendmsg (17-34 ms on the test
machine, ~93 % of a veth's delete and ~98 % of a bridge's: /work/research/perf, question 2). On the
event loop's socket that stalled every other call for as long, so every RTM_DELLINK goes through
here. Links a call retires (kernel/links.py: down and put in RETIRED_GROUP, so out of service at
once) are unregistered later, together: one RTM_DELLINK for the group is one barrier for the whole
batch, sent once the loop's socket has been idle for IDLE seconds (an unregister holds the RTNL
lock for part of its time: kept out of bursts of calls), or MAX_WAIT after the first was retired.

A retired link still holds its name until then: `take(name)` unregisters it at once (awaited, in the
worker) for the caller about to make a link of that name. After a kill -9 the retired links are still
in RETIRED_GROUP: the next start unregisters the group (reconcile), whatever else it keeps.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..errors import KernelError

RETIRED_GROUP = 0x504E5A  # "PNZ": the netdev group of links pynet has retired, and only those
IDLE = 0.2  # seconds without a netlink request on the loop's socket before retired links go
MAX_WAIT = 2.0  # ... or this long after the first of them was retired, whatever comes first
log = logging.getLogger("pynet.links")


class Reaper:
    def __init__(self, idle: float = IDLE, max_wait: float = MAX_WAIT):
        self.idle, self.max_wait = idle, max_wait
        self.pending: set[str] = set()  # retired, not yet unregistered (their names are still taken)
        self.last_request = 0.0  # loop time of the loop socket's last request (Links sets it)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pynet-reaper")
        self._ipr: IPRoute | None = None  # made and used in the worker thread only
        self._task: asyncio.Task | None = None
        self._reaping: set[str] = set()  # the batch the worker is unregistering

    # ------------------------------------------------------------ the loop's side
    async def delete(self, name: str) -> None:
        """Unregister `name` now (awaited; the loop keeps serving other calls meanwhile)."""
        self.pending.discard(name)
        await self._run(self._delete, name)

    async def take(self, name: str) -> None:
        """`name` is about to be made again: if a retired link still holds it, it goes now (after the
        batch being unregistered, if it is in that one: the worker runs one thing at a time)."""
        if name in self.pending or name in self._reaping:
            await self.delete(name)

    def retired(self, *names: str) -> None:
        self.pending.update(n for n in names if n)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._when_idle())

    async def settle(self) -> None:
        """Every retired link unregistered now, this daemon's and any an earlier run left in the group."""
        batch, self.pending = set(self.pending), set()
        self._reaping |= batch
        try:
            await self._run(self._reap, batch)
        finally:
            self._reaping -= batch

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.settle()
        except KernelError as e:  # the next start unregisters the group
            log.warning("retired links left for the next start", extra={"fields": {"error": str(e)}})
        await self._run(self._close)
        self._pool.shutdown(wait=True)

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _when_idle(self) -> None:
        loop = asyncio.get_running_loop()
        first = loop.time()
        while self.pending:
            now = loop.time()
            quiet = now - self.last_request
            if quiet < self.idle and now - first < self.max_wait:
                await asyncio.sleep(min(self.idle - quiet, first + self.max_wait - now) + 0.001)
                continue
            try:
                await self.settle()
            except KernelError as e:
                log.warning("retired links not unregistered", extra={"fields": {"error": str(e)}})
            first = loop.time()

    # ------------------------------------------------------------ the worker thread's side
    def _sock(self) -> IPRoute:
        if self._ipr is None:
            self._ipr = IPRoute()
        return self._ipr

    def _close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def _delete(self, name: str) -> None:
        try:
            self._sock().link("del", ifname=name)
        except NetlinkError as e:
            if e.code != errno.ENODEV:
                raise KernelError(f"delete {name}: {e.args[1] if len(e.args) > 1 else e}") from None
        except OSError as e:
            raise KernelError(f"delete {name}: {e}") from None

    def _reap(self, names: set[str]) -> None:
        """One RTM_DELLINK for the whole group (every retired link is in it); one by one only if the
        kernel refuses that (a device of someone else's in the group that cannot be deleted so)."""
        try:
            self._sock().link("del", group=RETIRED_GROUP)
            return
        except NetlinkError as e:
            if e.code == errno.ENODEV:  # nothing in the group
                return
            log.warning("retired links unregistered one by one", extra={"fields": {"error": str(e)}})
        except OSError as e:
            raise KernelError(f"unregister retired links: {e}") from None
        errors = []
        for name in sorted(names):
            try:
                self._delete(name)  # ENODEV (gone with the group) is fine
            except KernelError as e:
                errors.append(str(e))
        if errors:
            raise KernelError("; ".join(errors))
