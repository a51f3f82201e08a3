"""The daemon's own memory: what it holds (for `pynet status` and the bench), and giving freed heap back
when idle. The allocator's thresholds are set in kernel/nlmem.py (why: the netlink buffers)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def _libc():
    try:
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc, or one before 2.33 (no mallinfo2)
        return None


_LIBC = _libc()


def heap_in_use() -> int | None:
    """Bytes the process has allocated and not freed (malloc's heap and its mmapped blocks), None when
    the C library cannot say. Unlike RSS it ignores freed memory the allocator keeps (up to kernel/
    nlmem.py's TRIM_THRESHOLD at the heap's top, and holes inside it): what grows here is held."""
    if _LIBC is None:
        return None
    info = _LIBC.mallinfo2()
    return info.uordblks + info.hblkhd


IDLE_TRIM_S = 1.0  # no call answered for this long: the burst is over


class IdleTrim:
    """Gives the heap's free pages back to the kernel (malloc_trim) once a burst of calls is over.

    The trim threshold (kernel/nlmem.py) keeps up to 4 MiB of freed heap mapped while calls come, so
    that they pay no page faults; once the daemon is idle that memory is returned, at most once per
    burst, so RSS at rest is the memory in use plus the allocator's holes."""

    def __init__(self) -> None:
        self.trimmed_after = 0.0  # the activity time of the last burst trimmed
        self.count = 0  # trims so far (`pynet status`: a bench waits for the next one to read RSS at rest)

    def maybe(self, last_activity: float, now: float) -> bool:
        """Trim when there was activity since the last trim and none for IDLE_TRIM_S; True if it did."""
        if _LIBC is None or last_activity <= self.trimmed_after or now - last_activity < IDLE_TRIM_S:
            return False
        self.trimmed_after = last_activity
        _LIBC.malloc_trim(0)
        self.count += 1
        return True


TRIM = IdleTrim()  # the daemon's (app.py runs it)


def memory() -> dict:
    """The daemon's resident memory, the part of it malloc has handed out and not got back (bytes; None
    where unknown: RSS also counts freed memory the allocator keeps until the daemon is idle), the
    blocks Python's own allocator holds (small objects live in its arenas, not in malloc's heap), and
    how many idle trims there were."""
    rss = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/statm") as fh:
            rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return {"rss": rss, "heap_in_use": heap_in_use(), "python_blocks": sys.getallocatedblocks(),
            "idle_trims": TRIM.count}
