"""Traffic shaping with tc through pyroute2 (a mixin of Links: one netlink socket, one lock).

Two shapes, both on the egress side of a host-namespace device (the only side where
Linux queues, so the only one that can shape rather than drop):

  shape(dev)                 a TBF as dev's root qdisc: everything dev sends
                             (nat/l2bridge: the host side of a container's veth,
                             i.e. the container's ingress)
  shape_source(dev, mac)     an HTB as dev's root qdisc, one class per shaped source
                             MAC, chosen by a u32 filter on the Ethernet source;
                             other traffic goes through HTB's direct queue, unshaped
                             (transparent: a macvlan's frames leave through its parent)

Every qdisc pynet makes has the handle 706e: ("pn"), so pynet never removes or changes
a qdisc it did not make: a root qdisc of someone else's (a non-zero handle that is not
ours) is refused with an error naming it, and removing our last class removes our root
qdisc (the kernel puts the device's default back). The kernel here has no tc actions
(act_police, act_mirred), so there is no tc policing or ifb redirection: the other
direction is policed with nftables (kernel/police.py).

pyroute2's u32 key syntax cannot point before the network header, where the Ethernet
addresses are (offsets -14 and -8), so the u32 filter is encoded here (struct tc_u32_sel).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REQUEST, nla, nlmsg
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELTFILTER, RTM_GETQDISC, RTM_NEWTFILTER, TC_H_ROOT
from pyroute2.netlink.rtnl.tcmsg import tcmsg
from pyroute2.netlink.rtnl.tcmsg.common import tick_in_usec

from ..errors import KernelError
from .linkinfo import GONE

MAJOR = 0x706E  # "pn"
HANDLE = MAJOR << 16
ETH_P_ALL = 0x0003
U32_PRIO = 1
U32_HTID = 0x800  # u32's default hash table: filter handles 800::<node>
MAX_NODE = 0xFFF  # u32 node ids are 12 bits: at most 4095 shaped sources per device
TC_U32_TERMINAL = 1
LATENCY_US = 50_000  # a TBF queues at most this long (then drops): bounded delay under load
QUANTUM = 60_000  # HTB's per-round quantum (bytes); fixed: r2q would give 12.5 MB at 1 Gbit/s


def _mac_keys(mac: str) -> bytes:
    """struct tc_u32_sel matching Ethernet source `mac`: 4 bytes at -8 and 2 at -4 (relative to
    the network header, as tc's `match ether src`)."""
    raw = bytes.fromhex(mac.replace(":", ""))
    keys = [(0xFFFFFFFF, int.from_bytes(raw[:4], "big"), -8), (0xFFFF0000, int.from_bytes(raw[4:], "big") << 16, -4)]
    sel = struct.pack("=BBBxHHhhI", TC_U32_TERMINAL, 0, len(keys), 0, 0, 0, 0, 0)
    for mask, val, off in keys:
        sel += struct.pack(">II", mask, val) + struct.pack("=ii", off, 0)
    return sel


class _u32_filter(nlmsg):
    """A tcmsg (same header) whose u32 options carry a selector encoded by _mac_keys. Not a subclass
    of pyroute2's tcmsg: pyroute2 caches a class's compiled attribute table, and a subclass would
    inherit tcmsg's, which encodes TCA_OPTIONS through its own u32 plugin."""

    prefix = "TCA_"
    fields = (("family", "B"), ("pad1", "B"), ("pad2", "H"), ("index", "i"), ("handle", "I"), ("parent", "I"),
              ("info", "I"))
    nla_map = (("TCA_UNSPEC", "none"), ("TCA_KIND", "asciiz"), ("TCA_OPTIONS", "u32_options"))

    class u32_options(nla):
        nla_map = (("TCA_U32_UNSPEC", "none"), ("TCA_U32_CLASSID", "uint32"), ("TCA_U32_HASH", "uint32"),
                   ("TCA_U32_LINK", "hex"), ("TCA_U32_DIVISOR", "uint32"), ("TCA_U32_SEL", "cdata"))


def _root_msg(index: int):
    msg = tcmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["index"] = index
    msg["parent"] = TC_H_ROOT
    return msg


def _filter_msg(index: int, node: int, mac: str = ""):
    """Our u32 filter 800::<node> on the device (with `mac`: its classid and selector, to add it)."""
    msg = _u32_filter()
    msg["family"] = socket.AF_UNSPEC
    msg["index"] = index
    msg["handle"] = (U32_HTID << 20) | node
    msg["parent"] = HANDLE
    msg["info"] = (U32_PRIO << 16) | socket.htons(ETH_P_ALL)
    msg["attrs"] = [["TCA_KIND", "u32"]]
    if mac:
        msg["attrs"].append(["TCA_OPTIONS", {"attrs": [["TCA_U32_CLASSID", HANDLE | node],
                                                      ["TCA_U32_SEL", _mac_keys(mac)]]}])
    return msg


def _filter_mac(msg) -> str:
    """The source MAC a dumped u32 filter of ours matches ("" if it is not one). The selector is read
    from its raw bytes: pyroute2 0.9.7 decodes u32 keys 4 bytes off."""
    opts = msg.get_attr("TCA_OPTIONS")
    slots = [slot for slot in (opts or {}).get("attrs", []) if slot[0] == "TCA_U32_SEL"]
    if not slots:
        return ""
    sel = slots[0].nla
    raw = bytes(sel.data[sel.offset + 4:sel.offset + sel.length])  # past the attribute header
    if len(raw) < 16:
        return ""
    nkeys = raw[2]
    keys = {}
    for i in range(nkeys):
        chunk = raw[16 + 16 * i:32 + 16 * i]
        if len(chunk) < 16:
            return ""
        mask, val = struct.unpack(">II", chunk[:8])
        off, _offmask = struct.unpack("=ii", chunk[8:])
        keys[off] = (val, mask)
    if set(keys) != {-8, -4} or keys[-8][1] != 0xFFFFFFFF or keys[-4][1] != 0xFFFF0000:
        return ""
    mac = keys[-8][0].to_bytes(4, "big") + (keys[-4][0] >> 16).to_bytes(2, "big")
    return ":".join(f"{b:02x}" for b in mac)


class TcOps:
    """Needs `get(name)`, `_call(what, method, ...)` and `_raw(what, msg, type, flags)` from Links."""

    _tc_lock: asyncio.Lock

    async def _index(self, dev: str) -> int:
        link = await self.get(dev)
        if link is None:
            raise KernelError(f"interface {dev} does not exist")
        return link.index

    async def _root(self, index: int, ok_errnos=()) -> tuple[str, int] | None:
        """(kind, handle) of the device's root qdisc; None for the kernel's built-in noqueue/noop. One
        RTM_GETQDISC with NLM_F_ECHO (the kernel answers a "get" only to an echo request), not a dump:
        a dump lists every qdisc of the host (~50 ms with 700 interfaces on a busy machine)."""
        for reply in await self._query(f"root qdisc of interface {index}", _root_msg(index), RTM_GETQDISC,
                                       NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO, ok_errnos):
            if reply.get("event") == "RTM_NEWQDISC" and reply["index"] == index:
                return reply.get_attr("TCA_KIND"), reply["handle"]
        return None

    async def _own_root(self, dev: str, index: int, kind: str) -> bool:
        """True when dev's root qdisc is ours and of `kind`; False when it is the kernel's default
        (handle 0) or absent; KernelError when it is someone else's or ours of another kind."""
        root = await self._root(index)
        if root is None or root[1] == 0:
            return False
        if root[1] != HANDLE:
            raise KernelError(f"{dev} has a root qdisc ({root[0]} {root[1] >> 16:x}:) that pynet did not make; "
                              f"remove it (tc qdisc del dev {dev} root) to limit containers there")
        if root[0] != kind:
            raise KernelError(f"{dev} already carries pynet's {root[0]}, not {kind}")
        return True

    # ------------------------------------------------------------ a TBF on the whole device
    async def shape(self, dev: str, rate: int, burst: int) -> None:
        """dev sends at most `rate` bits/s, bursts of `burst` bytes (a TBF as its root qdisc)."""
        async with self._tc_lock:
            index = await self._index(dev)
            await self._own_root(dev, index, "tbf")
            await self._call(f"shape {dev}", "tc", "replace", "tbf", index=index, handle=HANDLE,
                             rate=rate // 8, burst=burst, latency=LATENCY_US)

    async def unshape(self, dev: str) -> None:
        """pynet's root qdisc off dev (none, or dev gone: nothing to do); anything else stays: the
        kernel deletes a root qdisc only when the handle asked for is its handle. The device
        going between the look-up and the change is done too (GONE)."""
        async with self._tc_lock:
            link = await self.get(dev)
            if link is not None:
                await self._call(f"unshape {dev}", "tc", "del", index=link.index, handle=HANDLE, parent=TC_H_ROOT,
                                 ok_errnos=(errno.ENOENT, errno.EINVAL) + GONE)

    async def shaped(self, dev: str) -> tuple[int, int] | None:
        """(rate bits/s, burst bytes) of pynet's TBF on dev, or None."""
        link = await self.get(dev)
        if link is None:
            return None
        for reply in await self._query(f"root qdisc of {dev}", _root_msg(link.index), RTM_GETQDISC,
                                       NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO):
            if reply.get("event") == "RTM_NEWQDISC" and reply["handle"] == HANDLE \
                    and reply.get_attr("TCA_KIND") == "tbf":
                parms = reply.get_attr("TCA_OPTIONS").get_attr("TCA_TBF_PARMS")
                rate = parms["rate"]  # bytes/s; buffer: the burst as ticks of transmit time at that rate
                return rate * 8, round(parms["buffer"] * rate / (1e6 * tick_in_usec))
        return None

    async def shaped_devices(self) -> dict[str, str]:
        """Device name -> kind ("tbf", "htb") of every root qdisc pynet made (for the leftover sweep)."""
        names = {link.index: link.name for link in await self.list()}
        return {names[msg["index"]]: msg.get_attr("TCA_KIND")
                for msg in await self._call("list qdiscs", "tc", "dump") or []
                if msg["parent"] == TC_H_ROOT and msg["handle"] == HANDLE and msg["index"] in names}

    # ------------------------------------------------------------ HTB classes by source MAC
    async def _classes(self, index: int) -> dict[str, int]:
        """Source MAC -> node (= class minor) of pynet's u32 filters on the device (none once it is gone)."""
        out = {}
        for msg in await self._call("list filters", "tc", "dump-filter", index=index, parent=HANDLE,
                                    ok_errnos=(errno.EINVAL, errno.ENOENT) + GONE) or []:
            if msg.get_attr("TCA_KIND") != "u32" or (msg["handle"] >> 20) != U32_HTID or not msg["handle"] & 0xFFF:
                continue
            mac = _filter_mac(msg)
            if mac:
                out[mac] = msg["handle"] & 0xFFF
        return out

    async def shape_source(self, dev: str, mac: str, rate: int, burst: int) -> None:
        """Frames from `mac` leave dev at most at `rate` bits/s (bursts of `burst` bytes)."""
        async with self._tc_lock:
            index = await self._index(dev)
            if not await self._own_root(dev, index, "htb"):
                # default 0: unclassified traffic takes HTB's direct queue, not shaped at all.
                await self._call(f"add HTB on {dev}", "tc", "replace", "htb", index=index, handle=HANDLE,
                                 parent=TC_H_ROOT, default=0)
            classes = await self._classes(index)
            node = classes.get(mac)
            if node is None:
                used = set(classes.values())
                node = next((n for n in range(1, MAX_NODE + 1) if n not in used), 0)
                if not node:
                    raise KernelError(f"{dev} already shapes {MAX_NODE} sources; no room for {mac}")
            bps = rate // 8
            await self._call(f"HTB class for {mac} on {dev}", "tc", "replace-class", "htb", index=index,
                             handle=HANDLE | node, parent=HANDLE, rate=bps, ceil=bps, burst=burst, cburst=burst,
                             quantum=QUANTUM)
            if mac not in classes:
                await self._raw(f"u32 filter for {mac} on {dev}", _filter_msg(index, node, mac), RTM_NEWTFILTER,
                                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)

    async def unshape_source(self, dev: str, mac: str) -> None:
        """mac's class and filter off dev; with the last one, pynet's HTB too (dev gone, at any step:
        nothing to do, GONE)."""
        async with self._tc_lock:
            link = await self.get(dev)
            if link is None:
                return
            root = await self._root(link.index, GONE)
            if root is None or root[1] != HANDLE or root[0] != "htb":
                return
            classes = await self._classes(link.index)
            node = classes.pop(mac, None)
            if node is not None:
                await self._raw(f"delete u32 filter for {mac} on {dev}", _filter_msg(link.index, node), RTM_DELTFILTER,
                                NLM_F_REQUEST | NLM_F_ACK, ok_errnos=(errno.ENOENT,) + GONE)
                await self._call(f"delete HTB class for {mac} on {dev}", "tc", "del-class", index=link.index,
                                 handle=HANDLE | node, parent=HANDLE, ok_errnos=(errno.ENOENT, errno.EINVAL) + GONE)
            if not classes:
                await self._call(f"remove HTB from {dev}", "tc", "del", index=link.index, handle=HANDLE,
                                 parent=TC_H_ROOT, ok_errnos=(errno.ENOENT, errno.EINVAL) + GONE)

    async def shaped_sources(self, dev: str) -> set[str]:
        """Source MACs pynet's HTB on dev shapes (for the leftover sweep)."""
        link = await self.get(dev)
        if link is None:
            return set()
        return set(await self._classes(link.index))


async def raw_request(ipr, msg, msg_type: int, flags: int) -> None:
    """Send one hand-built netlink message and wait for its ack (NetlinkError on a refusal)."""
    async for _ in await ipr.nlm_request(msg, msg_type=msg_type, msg_flags=flags):
        pass


__all__ = ["HANDLE", "MAJOR", "NetlinkError", "TcOps", "raw_request"]
