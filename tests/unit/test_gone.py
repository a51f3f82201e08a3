"""Teardown of a device that goes between the look-up and the change (CI, stop 19: a container's veth
went with its namespace, which the kernel tears down in the background, while DeleteEndpoint took its
TBF off: "unshape pn-...: No such device", a 500). Removing something from a device that is gone is
done. A fake netlink socket that finds the device, then answers ENODEV to everything after."""

from __future__ import annotations

import asyncio
import errno

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from pynet.errors import KernelError
from pynet.kernel.linkinfo import LinkInfo
from pynet.kernel.links import Links
from pynet.kernel.police import Police


class Msg(dict):
    def get_attr(self, name):
        return self.get(name)


class VanishingIPR:
    """The device exists for the first `lookups` look-ups by name; every request after is ENODEV."""

    def __init__(self, lookups: int = 1):
        self.lookups = lookups
        self.sent: list[str] = []

    def get(self, name):  # kernel/rawlink.RawLink's look-up
        self.sent.append("link get")
        if self.lookups > 0:
            self.lookups -= 1
            return LinkInfo(index=7, name=name, alias="", kind="veth", master=0, mac="", mtu=1500, up=True)
        return None

    def close(self):
        pass

    async def link(self, cmd, **kw):
        self.sent.append(f"link {cmd}")
        raise NetlinkError(errno.ENODEV, "No such device")

    async def _gone(self, *args, **kw):
        raise NetlinkError(errno.ENODEV, "No such device")

    async def tc(self, cmd, *args, **kw):
        self.sent.append(f"tc {cmd}")
        await self._gone()

    async def route(self, cmd, **kw):
        self.sent.append(f"route {cmd}")
        await self._gone()

    async def neigh(self, cmd, **kw):
        self.sent.append(f"neigh {cmd}")
        await self._gone()

    async def nlm_request(self, msg, msg_type, msg_flags):
        self.sent.append(f"raw {msg_type}")
        await self._gone()


def links_with(ipr) -> Links:
    links = Links("pn-")
    links._ipr = ipr
    links._nl = ipr
    return links


@pytest.mark.parametrize("teardown", [
    lambda lk: lk.unshape("pn-hx"),
    lambda lk: lk.unshape_source("pn-br", "02:00:00:00:00:01"),
    lambda lk: lk.delete_route("10.0.0.2/32", "pn-hx"),
    lambda lk: lk.delete_proxy_neigh("10.0.0.2", "pn-hx"),
], ids=["unshape", "unshape_source", "delete_route", "delete_proxy_neigh"])
def test_a_device_gone_after_its_look_up_is_removed_not_an_error(teardown):
    ipr = VanishingIPR()
    asyncio.run(teardown(links_with(ipr)))
    assert ipr.sent[0] == "link get" and len(ipr.sent) >= 2  # it did try the change, and got ENODEV


def test_making_a_limit_on_a_device_that_went_is_still_an_error():
    """Only removals take ENODEV as done: a shape that finds no device says so."""
    ipr = VanishingIPR()
    with pytest.raises(KernelError, match="No such device"):
        asyncio.run(links_with(ipr).shape("pn-hx", 10_000_000, 64_000))


class FlakyNft:
    """A netdev table whose chain the kernel deletes (with its device) between read and change, as
    older kernels do (6.18 keeps them): the first change is refused, the second read no longer shows the chain."""

    def __init__(self):
        self.runs: list[list[str]] = []
        self.chain_there = True

    async def list(self, what):
        items = [{"table": {"name": "pn"}}]
        if self.chain_there:
            items.append({"chain": {"name": "dev_pn-hx", "dev": "pn-hx"}})
        items.append({"chain": {"name": "dev_pn-hy", "dev": "pn-hy"}})
        return items

    async def run(self, lines):
        self.runs.append(lines)
        if self.chain_there:
            self.chain_there = False  # gone with its device while the change was on its way
            raise KernelError("nftables refused the change: No such file or directory")


def test_a_policer_whose_chain_went_with_its_device_is_removed_not_an_error():
    nft = FlakyNft()
    asyncio.run(Police(nft, "pn").unpolice("pn-hx"))
    assert len(nft.runs) == 1  # the second read found nothing left to remove


def test_a_policer_removal_the_kernel_refuses_for_another_reason_is_an_error():
    class Refusing(FlakyNft):
        async def run(self, lines):
            self.runs.append(lines)
            raise KernelError("nftables refused the change: Operation not permitted")
    nft = Refusing()
    with pytest.raises(KernelError, match="not permitted"):
        asyncio.run(Police(nft, "pn").unpolice("pn-hx"))
    assert len(nft.runs) == 2  # read again, still there: tried once more, then reported



class RefusingLookUp:
    """The look-up of a retired bridge refused for a reason other than its absence (EPERM)."""

    def get(self, name):
        raise OSError(errno.EPERM, "Operation not permitted")

    def close(self):
        pass


def test_a_retired_bridge_that_cannot_be_looked_up_goes_back_to_the_reaper():
    """reuse_bridge makes a new bridge instead (None), and the retired one is still unregistered as
    planned: not dropped from the reaper's books (it would stay until the next start)."""
    async def go():
        links = links_with(RefusingLookUp())
        links.reaper.pending["pn-z0000001"] = True
        got = await links.reuse_bridge("pn-nabc", "pynet:network/abc", 1500, False, "")
        links.reaper._task.cancel()
        return got, dict(links.reaper.pending)
    got, pending = asyncio.run(go())
    assert got is None
    assert pending == {"pn-z0000001": True}
