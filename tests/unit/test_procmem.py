"""The daemon's own memory figures and its idle trim (procmem.py): real glibc for the figures, a
recording stand-in for malloc_trim where only the decision is under test."""

from __future__ import annotations

import pytest

from pynet import procmem

needs_glibc = pytest.mark.skipif(procmem._LIBC is None, reason="no mallinfo2/malloc_trim (not glibc >= 2.33)")


class RecordingLibc:
    def __init__(self):
        self.trims = 0

    def malloc_trim(self, pad):
        assert pad == 0
        self.trims += 1


@pytest.fixture
def libc(monkeypatch):
    fake = RecordingLibc()
    monkeypatch.setattr(procmem, "_LIBC", fake)
    return fake


def test_no_trim_before_any_call(libc):
    t = procmem.IdleTrim()
    assert not t.maybe(0.0, 100.0)
    assert (libc.trims, t.count) == (0, 0)


def test_no_trim_while_calls_come(libc):
    t = procmem.IdleTrim()
    assert not t.maybe(10.0, 10.5)  # the last call 0.5 s ago: the burst may go on
    assert libc.trims == 0


def test_one_trim_per_burst(libc):
    t = procmem.IdleTrim()
    assert t.maybe(10.0, 11.5)
    assert not t.maybe(10.0, 16.5)  # idle since: nothing new to give back
    assert not t.maybe(20.0, 20.2)
    assert t.maybe(20.0, 25.0)  # the next burst, once over
    assert (libc.trims, t.count) == (2, 2)


@needs_glibc
def test_heap_in_use_follows_what_is_held():
    before = procmem.heap_in_use()
    held = bytearray(16 << 20)  # mmapped by malloc: counted in hblkhd
    during = procmem.heap_in_use()
    del held
    after = procmem.heap_in_use()
    assert during - before >= 16 << 20
    assert during - after >= 16 << 20


@needs_glibc
def test_memory_document():
    mem = procmem.memory()
    assert set(mem) == {"rss", "heap_in_use", "python_blocks", "idle_trims"}
    assert mem["rss"] > mem["heap_in_use"] > 0
    assert mem["python_blocks"] > 0


TRIM_PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
from pynet import procmem
from pynet.kernel import nlmem
nlmem.fix_mmap_threshold()  # the daemon's allocator settings
blocks = [bytearray(100_000) for _ in range(35)]  # 3.5 MB from the heap: below both thresholds
del blocks
kept = procmem.memory()["rss"]
assert procmem.IdleTrim().maybe(1.0, 3.0)
print(kept, procmem.memory()["rss"])
"""


@needs_glibc
def test_a_trim_gives_freed_heap_back():
    """With the daemon's settings, freed heap stays mapped (that is the point: no page faults on the
    next call) until the idle trim gives it back. In a process of its own: mallopt is process-wide."""
    import subprocess
    import sys
    from pathlib import Path
    out = subprocess.run([sys.executable, "-c", TRIM_PROBE, str(Path(procmem.__file__).parents[1])],
                         capture_output=True, text=True, check=True).stdout.split()
    kept, trimmed = int(out[0]), int(out[1])
    assert kept - trimmed >= 3 << 20, (kept, trimmed)
