"""netns tier: the real daemon and kernel in fresh namespaces, no dockerd.

Each test gets its own host namespace with its own daemon (socket in a temp
dir, never /run/docker/plugins, which dockerd scans), state dir and table.
Teardown kills the daemon, then deletes every namespace the test made: links
and nftables tables go with them, even when the test failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nslib import Host  # noqa: E402


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


def _failed(node) -> bool:
    return any(getattr(getattr(node, f"rep_{when}", None), "failed", False) for when in ("setup", "call"))


@pytest.fixture
def host(request):
    """A started pynet daemon alone in a fresh namespace; everything of it removed afterwards."""
    h = Host()
    try:
        h.start()
        yield h
    finally:
        if _failed(request.node):
            print(f"--- pynet log ({h.ns.name}) ---\n{h.pynet_log()[-5000:]}")
        h.close()
