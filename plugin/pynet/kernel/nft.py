"""libnftables (Debian's python3-nftables) behind one lock.

Changes go in as nft scripts (one script = one transaction); listings come back
as JSON. libnftables is synchronous: listings and long scripts run in a worker
thread so a large batch (thousands of map elements) never stalls the event loop;
a call's short script runs on the loop (cheaper than the hand-off).
"""

from __future__ import annotations

import asyncio
import json
import threading

from ..errors import KernelError

INLINE_LINES = 16  # scripts up to this many lines run on the event loop's thread


class Nft:
    def __init__(self) -> None:
        import nftables  # Debian's binding; imported here so unit tests never need it

        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(True)
        self._lock = threading.Lock()

    def _run(self, lines: list[str]) -> None:
        with self._lock:
            self._run_locked(lines)

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
        """Apply nft script lines as one transaction. A short one (a call's few elements, ~0.3 ms)
        runs right here, as a netlink request does: a worker thread's hand-off and its wait for the
        GIL back cost as much again, and more when the event loop is busy."""
        if not lines:
            return
        if len(lines) <= INLINE_LINES and self._lock.acquire(blocking=False):
            try:
                self._run_locked(lines)
            finally:
                self._lock.release()
        else:
            await asyncio.to_thread(self._run, lines)

    async def list(self, what: str) -> list[dict] | None:
        """`nft list <what>` as JSON objects, or None when it does not exist."""
        return await asyncio.to_thread(self._list, what)
