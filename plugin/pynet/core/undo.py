"""An undo stack: each applied step registers its inverse; on failure they run in reverse, never raising."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("pynet.undo")


class Undo:
    def __init__(self) -> None:
        self.steps: list = []

    def push(self, what: str, fn, *args) -> None:
        self.steps.append((what, fn, args))

    async def run(self) -> None:
        for what, fn, args in reversed(self.steps):
            try:
                result = fn(*args)
                if asyncio.iscoroutine(result):
                    await result
            except Exception as e:  # noqa: BLE001 - undo must go on
                log.error("undo step failed", extra={"fields": {"step": what, "error": str(e)}})
        self.steps.clear()
