"""tests/stale.py: what a killed test session left is removed by the next one; a live session's is kept."""

from __future__ import annotations

import sys
from pathlib import Path

import stale
from lib import Netns

HERE = Path(__file__).resolve().parents[1]


def test_sweep_removes_dead_sessions_things_and_keeps_live_ones(tmp_path):
    ns = Netns("stale")
    dead, live = "q9", "q8"  # q9: no session registered; q8: registered to a live process (this one)
    stale.register(live)
    try:
        for tag in (dead, live):
            ns.run("ip", "link", "add", f"pn-{tag}-a", "type", "veth", "peer", "name", f"pnt{tag}o0")
            ns.run("nft", "add", "table", "inet", f"pynet_t{tag}")
        ns.run("ip", "link", "add", "pn-abcdef12", "type", "veth", "peer", "name", "other0")  # not a test's
        code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import stale; "
                f"print('\\n'.join(stale.sweep('zz', engine=False)))")
        out = ns.run(sys.executable, "-c", code).stdout.splitlines()
        links = ns.run("ip", "-o", "link", "show").stdout
        tables = ns.run("nft", "list", "tables").stdout
        assert f"link pn-{dead}-a" in out and f"nft table inet pynet_t{dead}" in out, out
        assert f"pn-{dead}-a" not in links and f"pynet_t{dead}" not in tables
        assert f"pn-{live}-a" in links and f"pnt{live}o0" in links and f"pynet_t{live}" in tables
        assert "pn-abcdef12" in links and "other0" in links
        assert not [line for line in out if live in line], out
    finally:
        stale.unregister(live)
        ns.close()
    assert live not in stale.alive_tags()
