"""Unit tier: no root, no kernel, no docker. Kernel parts are fakes (tests/unit/fakes.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugin"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from fakes import Docker, FakeLinks, FakeNft, FakePolice, FakeSysctl, build_app, make_driver  # noqa: E402
from pynet.config import Config  # noqa: E402


@pytest.fixture
def cfg(tmp_path) -> Config:
    return Config(socket=str(tmp_path / "pynet-unit.sock"), state_dir=str(tmp_path / "state"),
                  port_range="40000-40009", link_prefix="pn-", table="pynet_unit")


@pytest.fixture
def links() -> FakeLinks:
    # eth0 carries the host's LAN address; a subnet overlapping it must be refused.
    return FakeLinks(host_addrs=[("lo", "127.0.0.1/8"), ("eth0", "192.168.50.10/24")])


@pytest.fixture
def nft() -> FakeNft:
    return FakeNft(docker_user={"ip": [], "ip6": None})


@pytest.fixture
def sysctls() -> FakeSysctl:
    return FakeSysctl()


@pytest.fixture
def police() -> FakePolice:
    return FakePolice()


@pytest.fixture
async def driver(cfg, links, nft, sysctls, police):
    drv = make_driver(cfg, links, nft, sysctls, police=police)
    await drv.start()
    yield drv
    await drv.shutdown()


@pytest.fixture
async def docker(cfg, driver):
    """The app on a local test server, spoken to like dockerd does."""
    async with TestClient(TestServer(build_app(cfg, driver))) as client:
        yield Docker(client)
