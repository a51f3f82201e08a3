"""Links unregistered off the event loop: one worker thread with its own netlink socket.

Unregistering a link waits for an RCU barrier inside the netlink sendmsg (17-34 ms on the test
machine, ~93 % of a veth's delete and ~98 % of a bridge's: /work/research/perf, question 2). On the
event loop's socket that stalled every other call for as long, so every RTM_DELLINK goes through
here. Links a call retires (kernel/retire.py: down and put in this daemon's retired group, so out of
service at once) are unregistered later: one RTM_DELLINK for the group is one barrier for the whole
batch, sent once the loop's socket has been idle for IDLE seconds, or MAX_WAIT after the first was
retired. Bridges are the exception: each one's unregister waits for a second RCU barrier while it
holds the RTNL lock (br_multicast_dev_del, ~15-20 ms here), which every netlink request on the host
waits behind; a batch of 25 held it for half a second. So retired bridges sit in a group of their
own and go one per step, with the loop's requests let in between (STEP_GAP), unless a new network
takes one back first (reuse).

The groups are per daemon (derived from its link prefix: retired_group): two pynet daemons on one
host (a plugin and a test's, local and global scope) never unregister each other's links.

A retired link still holds its name until then: `take(name)` unregisters it at once (awaited, in the
worker) for the caller about to make a link of that name. After a kill -9 the retired links are still
in their groups: the next start unregisters both (reconcile), whatever else it keeps.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import zlib

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..errors import KernelError

IDLE = 0.2  # seconds without a netlink request on the loop's socket before retired links go
MAX_WAIT = 2.0  # ... or this long after the first of them was retired, whatever comes first
STEP_GAP = 0.02  # seconds between two bridges unregistered under load: the loop's requests get the RTNL lock
log = logging.getLogger("pynet.links")


def retired_group(prefix: str) -> int:
    """The netdev group of the links the daemon with link prefix `prefix` has retired (even), and
    only those; its retired bridges are in the group + 1. Never 0 (every link's default group)."""
    return 0x50000000 | (zlib.crc32(prefix.encode()) & 0x0FFFFFFE)


class Reaper:
    def __init__(self, prefix: str = "pn-", idle: float = IDLE, max_wait: float = MAX_WAIT):
        self.idle, self.max_wait = idle, max_wait
        self.group = retired_group(prefix)  # retired links; retired bridges: self.group + 1
        # retired, not yet unregistered (their names are still taken), oldest first -> is it a bridge
        self.pending: dict[str, bool] = {}
        self.last_request = 0.0  # loop time of the loop socket's last request (Links sets it)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pynet-reaper")
        self._ipr: IPRoute | None = None  # made and used in the worker thread only
        self._task: asyncio.Task | None = None
        self._reaping: set[str] = set()  # the batch the worker is unregistering

    # ------------------------------------------------------------ the loop's side
    async def delete(self, name: str) -> None:
        """Unregister `name` now (awaited; the loop keeps serving other calls meanwhile)."""
        self.pending.pop(name, None)
        await self._run(self._delete, name)

    async def take(self, name: str) -> None:
        """`name` is about to be made again: if a retired link still holds it, it goes now (after the
        batch being unregistered, if it is in that one: the worker runs one thing at a time)."""
        if name in self.pending or name in self._reaping:
            await self.delete(name)

    def retired(self, *names: str, bridge: bool = False) -> None:
        for name in names:
            if name:
                self.pending[name] = bridge
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._when_idle())

    def reuse(self) -> str | None:
        """The newest retired bridge not being unregistered, handed over (no longer this reaper's), or None."""
        for name in reversed(self.pending):
            if self.pending[name]:
                del self.pending[name]
                return name
        return None

    async def settle(self) -> None:
        """Every retired link unregistered now, this daemon's and any an earlier run left in its groups
        (bridges too, in one request: for start-up, shut-down and callers that need it all gone)."""
        batch, self.pending = set(self.pending), {}
        self._reaping |= batch
        try:
            await self._run(self._reap, batch, (self.group, self.group + 1))
        finally:
            self._reaping -= batch

    async def step(self) -> None:
        """One bounded piece of the background work: every retired link but the bridges (one request,
        one barrier outside the RTNL lock), else the oldest retired bridge alone."""
        if not self.pending:
            return
        batch = {name for name, bridge in self.pending.items() if not bridge}
        groups: tuple[int, ...] = (self.group,)
        if not batch:
            batch, groups = {next(iter(self.pending))}, ()  # bridges only: the oldest
        for name in batch:
            del self.pending[name]
        self._reaping |= batch
        try:
            await self._run(self._reap, batch, groups)
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
                await self.step()
            except KernelError as e:
                log.warning("retired links not unregistered", extra={"fields": {"error": str(e)}})
            if loop.time() - self.last_request < self.idle:
                await asyncio.sleep(STEP_GAP)  # under load: the loop's requests first
            if self.pending and all(self.pending.values()) and not self._overdue(first):
                first = loop.time()  # bridges only: next one when idle again, or MAX_WAIT from now

    def _overdue(self, first: float) -> bool:
        return asyncio.get_running_loop().time() - first >= self.max_wait

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

    def _reap(self, names: set[str], groups: tuple[int, ...]) -> None:
        """One RTM_DELLINK per group in `groups` (every retired link is in one of them); `names` one by
        one when there is no group to send, or the kernel refuses a group delete (a device in the group
        that cannot be deleted so)."""
        refused = not groups
        for group in groups:
            try:
                self._sock().link("del", group=group)
            except NetlinkError as e:
                if e.code != errno.ENODEV:  # ENODEV: nothing in the group
                    refused = True
                    log.warning("retired links unregistered one by one", extra={"fields": {"error": str(e)}})
            except OSError as e:
                raise KernelError(f"unregister retired links: {e}") from None
        if not refused:
            return
        errors = []
        for name in sorted(names):
            try:
                self._delete(name)  # ENODEV (gone with the group) is fine
            except KernelError as e:
                errors.append(str(e))
        if errors:
            raise KernelError("; ".join(errors))
