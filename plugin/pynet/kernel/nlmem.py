"""Keeping the daemon's memory flat under netlink traffic (measured in /work/research/perf, question 1).

Two causes, neither a Python leak: pyroute2 0.9.7 leaves the kernel's trailing ACK of every
successful `link get` in a queue nothing reads, and glibc serves asyncio's 256 KiB receive buffers
from its heap, where the shrunk remnants fragment it. Together they grew RSS ~9 MiB over the first
1,000 network+endpoint cycles and ~1 MiB per 1,000 after; with both fixed, ~2 MiB then ~0.3.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt(3)
# Between the two large buffers the daemon allocates again and again: libnftables' 128 KiB batch
# page (every nft command; mmapped, it cost ~1.4 ms of page faults per command here, 0.3 ms ->
# 1.7 ms) stays in the heap, reused; asyncio's 256 KiB receive buffers are mmapped.
MMAP_THRESHOLD = 192 * 1024
# Free memory at the top of a heap beyond this goes back to the kernel. glibc's default (128 KiB, no
# longer raised with the mmap threshold once that is set) let every call's buffers grow the heap and
# shrink it again: brk up and down ~450 times a second under the protocol bench, each growth paid in
# page faults (an nft command 0.3 -> 1.9 ms). A few MiB at most stay, the same MiB each time.
TRIM_THRESHOLD = 4 * 1024 * 1024


def fix_mmap_threshold() -> None:
    """Keep glibc's mmap threshold at 192 KiB instead of letting it rise (and its trim threshold
    at 4 MiB, which a fixed mmap threshold would leave at 128 KiB).

    asyncio reads every netlink datagram with recvfrom(256 KiB) and shrinks the buffer in place.
    glibc raises its mmap threshold the first time a large mmapped block is freed (Python's start-up
    already has), so those buffers are carved from the heap, and the shrunk remnants that outlive
    the next allocations fragment it. A threshold set explicitly is never raised (mallopt(3)):
    large buffers are mmapped and returned whole."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    except (OSError, AttributeError):  # no mallopt (not glibc): nothing to tune
        pass


def drop_orphans(ipr) -> None:
    """Drop the replies no request waits for, before the next request.

    pyroute2 0.9.7 ends a `get` (sent with NLM_F_ACK) at its data reply and frees that request's
    queue; the kernel's ACK, read a moment later, lands in the socket's default queue (tag 0), which
    nothing reads on a socket that only makes requests (it joins no multicast group): five per
    network+endpoint cycle, each pinning a shrunk 256 KiB receive buffer."""
    try:
        queue = ipr.msg_queue.root
    except AttributeError:  # no request made on this socket yet
        return
    while not queue.empty():
        queue.get_nowait()
        queue.task_done()
