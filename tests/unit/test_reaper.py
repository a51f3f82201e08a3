"""The reaper's bookkeeping (kernel/reaper.py) without a kernel: which links go in which step, and
the groups that keep two daemons' retired links apart."""

from __future__ import annotations

import asyncio

from lib import retired_groups
from pynet.kernel import reaper as reaper_mod
from pynet.kernel.reaper import Reaper, retired_group


def test_groups_are_per_prefix_and_the_tests_compute_them_as_the_daemon_does():
    for prefix in ("pn-", "po-", "pn-t7-", "abcdefg"):
        g = retired_group(prefix)
        assert retired_groups(prefix) == (g, g + 1)
        assert g != 0 and g % 2 == 0
    assert len({retired_group(p) for p in ("pn-", "po-", "pn-a1-", "pn-a2-")}) == 4


class Recorder(Reaper):
    def __init__(self):
        super().__init__("pn-")
        self.sent: list[tuple[set, tuple]] = []

    async def _run(self, fn, *args):
        if fn == self._reap:
            self.sent.append((set(args[0]), args[1]))


def test_a_step_sends_every_link_in_one_group_request_then_one_bridge_at_a_time():
    async def go():
        r = Recorder()
        r.pending.update({"pn-h1": False, "pn-za": True, "pn-h2": False, "pn-zb": True})
        await r.step()
        await r.step()
        assert r.reuse() == "pn-zb"  # a bridge can be taken back until its step comes
        await r.step()
        return r
    r = asyncio.run(go())
    g = retired_group("pn-")
    assert r.sent == [({"pn-h1", "pn-h2"}, (g,)), ({"pn-za"}, ())]
    assert not r.pending


def test_settle_sends_both_groups(monkeypatch):
    async def go():
        r = Recorder()
        r.pending.update({"pn-h1": False, "pn-za": True})
        await r.settle()
        return r
    r = asyncio.run(go())
    g = retired_group("pn-")
    assert r.sent == [({"pn-h1", "pn-za"}, (g, g + 1))]
    assert reaper_mod.STEP_GAP > 0
