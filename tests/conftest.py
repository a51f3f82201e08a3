"""Session-wide: tiers by privilege, and the leak check that fails the run."""

from __future__ import annotations

import os

import engine
import pytest
import stale
from lib import DOCKER, DRIVER, NS_PREFIX, PREFIX, TABLE, TAG, links_with_prefix, sh


def pytest_configure(config):
    # Before any test (and any thread): every docker command of the run talks to the engine under
    # test (PYNET_ENGINE), and for Docker 28 the run lives in its network namespace (tests/engine.py).
    if os.geteuid() == 0:
        engine.activate()
        # What killed sessions left here breaks this one (the same outside address on a dead veth):
        # removed first, and said (tests/stale.py).
        stale.register(TAG)
        for what in stale.sweep(TAG):
            print(f"removed, left by a killed test session: {what}")


def pytest_unconfigure(config):
    if os.geteuid() == 0:
        stale.unregister(TAG)


def pytest_report_header(config):
    return [f"pynet test tag {TAG}: driver {DRIVER}, links {PREFIX}*, table {TABLE}, netns {NS_PREFIX}-*",
            f"{engine.describe()}; docker-compose {engine.compose_version()}"]


def pytest_collection_modifyitems(config, items):
    root = os.geteuid() == 0
    slow = os.environ.get("PYNET_SLOW") == "1"
    for item in items:
        path = str(item.fspath)
        if "/netns/" in path:
            item.add_marker(pytest.mark.netns)
        if "/e2e/" in path:
            item.add_marker(pytest.mark.e2e)
        if not root and ("/netns/" in path or "/e2e/" in path):
            item.add_marker(pytest.mark.skip(reason="needs root (network namespaces, dockerd)"))
        if item.get_closest_marker("slow") and not slow:
            item.add_marker(pytest.mark.skip(reason="slow: run with PYNET_SLOW=1"))


def leaks() -> list[str]:
    found = [f"link {n}" for n in links_with_prefix()]
    out = sh("ip", "netns", "list", check=False).stdout
    found += [f"netns {line.split()[0]}" for line in out.splitlines() if line.startswith(NS_PREFIX)]
    for fam in ("-4", "-6"):
        rules = sh("ip", fam, "rule", check=False).stdout
        found += [f"rule {line.strip()}" for line in rules.splitlines() if f"iif {PREFIX}" in line]
    tables = sh("nft", "list", "tables", check=False).stdout
    found += [f"nft {line}" for line in tables.splitlines() if line.split()[-1:] == [TABLE]]
    for fam in ("ip", "ip6"):
        chain = sh("nft", "list", "chain", fam, "filter", "DOCKER-USER", check=False).stdout
        if f'"{PREFIX}*"' in chain:
            found.append(f"DOCKER-USER ({fam}) rule for {PREFIX}*")
    if os.path.exists(DOCKER):
        ps = sh(DOCKER, "ps", "-aq", "--filter", f"label=pynet-test={TAG}", check=False).stdout.split()
        found += [f"container {c}" for c in ps]
        nets = sh(DOCKER, "network", "ls", "-q", "--filter", f"driver={DRIVER}", check=False).stdout.split()
        found += [f"docker network {n}" for n in nets]
    return found


@pytest.fixture(scope="session", autouse=True)
def leak_check():
    """Fails the run if anything this test session made is left behind."""
    yield
    if os.geteuid() != 0:
        return
    left = leaks()
    assert not left, "test run leaked: " + ", ".join(left)
