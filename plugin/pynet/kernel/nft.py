"""libnftables (Debian's python3-nftables) behind one lock.

Changes go in as nft scripts (one script = one transaction); listings come back
as JSON. libnftables is synchronous: scripts run in a worker thread so a large
batch (thousands of map elements) never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import json
import threading

from ..errors import KernelError


class Nft:
    def __init__(self) -> None:
        import nftables  # Debian's binding; imported here so unit tests never need it

        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(True)
        self._lock = threading.Lock()

    def _run(self, lines: list[str]) -> None:
        with self._lock:
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
        """Apply nft script lines as one transaction."""
        if lines:
            await asyncio.to_thread(self._run, lines)

    async def list(self, what: str) -> list[dict] | None:
        """`nft list <what>` as JSON objects, or None when it does not exist."""
        return await asyncio.to_thread(self._list, what)
