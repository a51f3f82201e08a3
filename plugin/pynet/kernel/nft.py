"""libnftables (Debian's python3-nftables) behind one lock.

Changes go in as nft scripts (one script = one transaction); listings come back
as JSON. libnftables is synchronous: listings and long scripts run in a worker
thread so a large batch (thousands of map elements) never stalls the event loop;
a call's short script runs on the loop (cheaper than the hand-off). A short script that only
adds and removes elements of sets declared here goes to the kernel as a hand-built batch
(kernel/nftbatch.py) instead of through libnftables' parser and cache.
"""

from __future__ import annotations

import asyncio
import json
import threading

from ..errors import KernelError
from .nftbatch import Batch, SetType

INLINE_LINES = 16  # scripts up to this many lines run on the event loop's thread


class Nft:
    def __init__(self) -> None:
        import nftables  # Debian's binding; imported here so unit tests never need it

        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(True)
        self._lock = threading.Lock()
        self._batch = Batch()

    def declare(self, family: str, table: str, sets: dict[str, tuple[str, bool]]) -> None:
        """The types of a table's sets and maps (name -> (nft type, is an interval set)): element
        changes of these go to the kernel as a hand-built batch."""
        self._batch.declare(family, table, {name: SetType(spec, interval) for name, (spec, interval) in sets.items()})

    def close(self) -> None:
        self._batch.close()

    def _run(self, lines: list[str], msgs=None) -> None:
        with self._lock:
            self._apply_locked(lines, msgs)

    def _apply_locked(self, lines: list[str], msgs) -> None:
        """`msgs` (the lines encoded as a batch) when there are, else the lines through libnftables."""
        if msgs is None:
            self._run_locked(lines)
            return
        try:
            self._batch.send(msgs)
        except OSError as e:
            raise KernelError(f"nftables refused the change: {e}") from None

    def _run_locked(self, lines: list[str]) -> None:
        rc, _out, err = self._nft.cmd("\n".join(lines) + "\n")
        if rc != 0:
            raise KernelError(f"nftables refused the change: {err.strip()[:2000] or rc}")

    def _list(self, what: str) -> list[dict] | None:
        with self._lock:
            rc, out, _err = self._nft.cmd(f"list {what}")
        if rc != 0:
            return None
        return json.loads(out).get("nftables", []) if out else []

    async def run(self, lines: list[str]) -> None:
        """Apply nft script lines as one transaction. Element changes of declared sets go as a
        hand-built batch, and a short script of anything else through libnftables (~0.3 ms), right
        here, as a netlink request does: a worker thread's hand-off and its wait for the GIL back
        cost as much again, and more when the event loop is busy."""
        if not lines:
            return
        msgs = self._batch.encode(lines)
        if (msgs is not None or len(lines) <= INLINE_LINES) and self._lock.acquire(blocking=False):
            try:
                self._apply_locked(lines, msgs)
            finally:
                self._lock.release()
        else:
            await asyncio.to_thread(self._run, lines, msgs)

    async def list(self, what: str) -> list[dict] | None:
        """`nft list <what>` as JSON objects, or None when it does not exist."""
        return await asyncio.to_thread(self._list, what)
