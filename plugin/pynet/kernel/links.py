"""Links and addresses: the protocol calls' requests hand-built (kernel/rawlink.py, its own socket),
the rest through pyroute2's AsyncIPRoute (one netlink socket per daemon).

ensure_*, delete and retire* are idempotent: "already there" and "already gone" succeed.
Unregistering a link blocks its netlink request for an RCU barrier (17-34 ms): delete sends it from
a worker thread with its own socket (kernel/reaper.py), and the calls Docker waits on retire links
instead: out of service at once (down, their names and subnet free), unregistered in the background.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..errors import KernelError
from . import linkstats
from .rawlink import RawLink
from .api import LinkStats
from .linkinfo import LinkInfo, info, same_owner, sysctl_quiet
from .nlmem import drop_orphans, fix_mmap_threshold
from .reaper import Reaper
from .retire import RetireOps
from .routes import RouteOps
from .sandbox import set_container_addr
from .tc import TcOps, raw_request

IFA_F_NODAD = 0x02
RECYCLE_AFTER = 2000  # netlink requests per AsyncIPRoute socket


class Links(RouteOps, TcOps, RetireOps):
    def __init__(self, prefix: str = "pn-") -> None:
        self.prefix = prefix  # the daemon's link prefix: its retired groups and tombstone names
        self._ipr: AsyncIPRoute | None = None
        # pyroute2 matches replies by sequence number, but one request at a time
        # keeps error attribution simple; each request is sub-millisecond.
        self._lock = asyncio.Lock()
        self._tc_lock = asyncio.Lock()  # a tc change is several requests (look, then change): one at a time
        self._calls = 0
        self.reaper = Reaper(prefix)
        self._nl = RawLink()  # the hot requests (look-ups, link changes, addresses), hand-built

    async def open(self) -> None:
        fix_mmap_threshold()
        self._ipr = AsyncIPRoute()

    async def close(self) -> None:
        await self.reaper.close()
        self._nl.close()
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def _count_call(self) -> None:
        drop_orphans(self._ipr)  # replies the previous request left behind (kernel/nlmem.py)
        self.reaper.last_request = asyncio.get_running_loop().time()
        self._calls += 1
        if self._calls >= RECYCLE_AFTER:
            # pyroute2 0.9's AsyncIPRoute keeps a datagram it never hands out now and then
            # (measured: ~4 KiB of RSS per network create/delete); a fresh socket every few
            # thousand requests bounds that.
            self._calls = 0
            self._ipr.close()
            self._ipr = AsyncIPRoute()

    async def _raw(self, what: str, msg, msg_type: int, flags: int, ok_errnos=()) -> None:
        """A hand-built message (kernel/tc.py's u32 filter), under the same lock and errors."""
        async with self._lock:
            self._count_call()
            try:
                await raw_request(self._ipr, msg, msg_type, flags)
            except NetlinkError as e:
                if e.code in ok_errnos:
                    return
                raise KernelError(f"{what}: {e.args[1] if len(e.args) > 1 else e}") from None

    async def _query(self, what: str, msg, msg_type: int, flags: int, ok_errnos=()) -> list:
        """A hand-built request whose replies are wanted (kernel/tc.py's echoed qdisc "get")."""
        async with self._lock:
            self._count_call()
            try:
                return [m async for m in await self._ipr.nlm_request(msg, msg_type=msg_type, msg_flags=flags)]
            except NetlinkError as e:
                if e.code in ok_errnos:
                    return []
                raise KernelError(f"{what}: {e.args[1] if len(e.args) > 1 else e}") from None

    async def _call(self, what: str, method: str, *args, ok_errnos=(), **kw):
        async with self._lock:
            self._count_call()
            try:
                result = await getattr(self._ipr, method)(*args, **kw)
                if hasattr(result, "__aiter__"):
                    result = [m async for m in result]
                return result
            except NetlinkError as e:
                if e.code in ok_errnos:
                    return None
                raise KernelError(f"{what}: {e.args[1] if len(e.args) > 1 else e}") from None

    async def list(self) -> list[LinkInfo]:
        return [info(m) for m in await self._call("list links", "link", "dump")]

    async def link_stats(self) -> dict[str, LinkStats]:
        """Every host link's counters, name -> LinkStats, from ONE dump (what a metrics scrape costs),
        decoded by linkstats.py (pyroute2 would decode every attribute of every link)."""
        try:
            return await asyncio.to_thread(linkstats.dump)
        except OSError as e:
            raise KernelError(f"list link counters: {e.strerror or e}") from None

    async def get(self, name: str) -> LinkInfo | None:
        """The link of that name; a retired one still holding it is unregistered first (None)."""
        await self.reaper.take(name)
        return await self._kernel(f"look up {name}", self._nl.get, name)

    async def delete(self, name: str) -> None:
        await self.reaper.delete(name)

    async def _set(self, what: str, ok_errnos=(), **kw) -> bool:
        """`ip link set` (kernel/rawlink.RawLink.set's arguments) without pyroute2."""
        return await self._kernel(what, self._nl.set, ok_errnos=ok_errnos, **kw)

    async def _kernel(self, what: str, fn, *args, ok_errnos=(), **kw):
        """One of kernel/rawlink.RawLink's hand-built requests: its answer (True for a change), False
        when the kernel answered one of `ok_errnos`, else KernelError."""
        self.reaper.last_request = asyncio.get_running_loop().time()
        try:
            return fn(*args, **kw)
        except OSError as e:
            if e.errno in ok_errnos:
                return False
            raise KernelError(f"{what}: {e.strerror or e}") from None

    async def ensure_bridge(self, name: str, alias: str, mtu: int, addrs: list[str], ipv6: bool,
                            mac: str = "") -> bool:
        """Create (or repair) a bridge, with `mac` as its address when given (else the kernel's).
        Returns True when it was created."""
        link = await self.get(name)
        created = False
        if link is None:
            link = await self.reuse_bridge(name, alias, mtu, ipv6, mac)
            created = True
        if link is None:
            # No STP, no forward delay: ports forward at once, as Docker's bridge does.
            link = (await self._kernel(f"create bridge {name}", self._nl.create_bridge, name, mtu)
                    or await self.get(name))
        elif link.kind != "bridge":
            raise KernelError(f"{name} exists and is a {link.kind or 'non-bridge'} link, not a bridge")
        else:
            same_owner(link, alias)
        try:
            if ipv6:
                sysctl_quiet(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "0")
            kw = {"mtu": mtu} if mtu else {}
            if mac:
                kw["mac"] = mac
            await self._set(f"set up {name}", index=link.index, alias=alias, up=True, **kw)
            for cidr in addrs:
                await self.ensure_addr(link.index, name, cidr)
        except BaseException:
            if created:  # the caller's undo only knows about links we report as created
                await self.delete(name)
            raise
        return created

    async def ensure_addr(self, index: int, name: str, cidr: str) -> None:
        ip = ipaddress.ip_interface(cidr)
        flags = IFA_F_NODAD if ip.version == 6 else 0
        await self._kernel(f"add address {cidr} to {name}", self._nl.address, True, index, str(ip.ip),
                           ip.network.prefixlen, flags, ok_errnos=(errno.EEXIST,))

    async def _veth(self, host: str, peer: str, mac: str, mtu: int, alias: str,
                    master: int = 0) -> tuple[LinkInfo, bool]:
        """The veth pair `host`/`peer` (peer with `mac`), made if missing: (host side, created).
        `master`: the host side is made a port of that bridge, up, in the same request."""
        await self.reaper.take(host)  # a retired link still holding the name goes first (as in get)
        made = await self._kernel(f"create veth {host}", self._nl.create_veth, host, peer, mac, mtu, master=master,
                                  up=bool(master), ok_errnos=(errno.EEXIST,))
        if made is not False:  # made: the kernel's echo of it, or None (no echo: looked up)
            return made or await self.get(host), True
        link = await self.get(host)  # EEXIST: a retry, or a name taken by something else
        if link is None:
            raise KernelError(f"create veth {host}: its peer's name {peer} is taken")
        if link.kind != "veth":
            raise KernelError(f"{host} exists and is not a veth")
        same_owner(link, alias)
        return link, False

    async def ensure_veth(self, host: str, peer: str, mac: str, mtu: int, master: str, alias: str,
                          isolated: bool) -> bool:
        """Create a veth pair; host side enslaved to `master`. Returns True when it was created."""
        bridge = await self.get(master)
        if bridge is None:
            raise KernelError(f"bridge {master} is missing")
        # A new pair is made already a port of the bridge, up (its alias follows: not taken at creation).
        link, created = await self._veth(host, peer, mac, mtu, alias, master=bridge.index)
        # hairpin: a container may reach its own published port through a host address.
        await self._bridge_port(link, created, master, alias, isolated, hairpin=True, bridge=bridge)
        return created

    async def ensure_macvlan(self, name: str, parent: str, mac: str, mode: str, mtu: int, alias: str) -> bool:
        """A macvlan on `parent` (left down: Docker moves it into the container). True when created."""
        link = await self.get(name)
        if link is not None:
            if link.kind != "macvlan":
                raise KernelError(f"{name} exists and is not a macvlan")
            same_owner(link, alias)
            return False
        base = await self.get(parent)
        if base is None:
            raise KernelError(f"parent interface {parent} does not exist")
        kw = {"mtu": mtu} if mtu else {}
        await self._call(f"create macvlan {name} on {parent}", "link", "add", ifname=name, kind="macvlan",
                         link=base.index, macvlan_mode=mode, address=mac, ifalias=alias, **kw)
        return True

    async def ensure_vlan(self, name: str, base: str, vlan_id: int, alias: str) -> bool:
        """VLAN sub-interface `name` (e.g. eth0.50) of `base`, up. True when created."""
        link = await self.get(name)
        if link is not None:
            return False
        parent = await self.get(base)
        if parent is None:
            raise KernelError(f"interface {base} (base of VLAN parent {name}) does not exist")
        try:
            await self._call(f"create VLAN {name}", "link", "add", ifname=name, kind="vlan", link=parent.index,
                             vlan_id=vlan_id, ifalias=alias)
        except KernelError as e:
            if "not supported" in str(e).lower() or "unknown" in str(e).lower():
                raise KernelError(f"cannot create VLAN interface {name}: this kernel has no 802.1q VLAN support "
                                  f"(module 8021q); create {name} by hand or use a kernel with 8021q") from None
            raise
        link = await self.get(name)
        await self._set(f"set up {name}", index=link.index, up=True)
        return True

    async def set_up(self, name: str) -> None:
        link = await self.get(name)
        if link is None:
            raise KernelError(f"interface {name} does not exist")
        await self._set(f"set up {name}", index=link.index, up=True)

    async def ensure_routed_veth(self, host: str, peer: str, mac: str, mtu: int, alias: str) -> bool:
        """A veth pair whose host side is a routed port (no bridge), up. True when created."""
        link, created = await self._veth(host, peer, mac, mtu, alias)
        try:
            await self._set(f"set up {host}", index=link.index, alias=alias, up=True)
        except BaseException:
            if created:
                await self.delete(host)
            raise
        return created

    async def container_addr(self, sandbox: str, mac: str, cidr: str, present: bool) -> bool:
        """`cidr` added to (present) or removed from the interface with `mac` in the container's namespace."""
        return await set_container_addr(sandbox, mac, cidr, present)

    async def ensure_vxlan(self, name: str, vni: int, dev: str, local: str, group: str, port: int, mtu: int,
                           master: str, alias: str, isolated: bool) -> bool:
        """A learning VXLAN device (VNI `vni`, source `local` on `dev`, floods to multicast `group`,
        UDP `port`) as a port of bridge `master`, up. True when created."""
        link = await self.get(name)
        created = False
        if link is not None:
            if link.kind != "vxlan":
                raise KernelError(f"{name} exists and is not a vxlan device")
            same_owner(link, alias)
        else:
            if self.reaper.pending:  # a retired VXLAN of the same VNI and port would refuse this one
                await self.reaper.settle()
            under = await self.get(dev)
            if under is None:
                raise KernelError(f"underlay interface {dev} of {name} does not exist")
            kw = {"mtu": mtu} if mtu else {}
            await self._call(f"create vxlan {name} (VNI {vni} on {dev})", "link", "add", ifname=name, kind="vxlan",
                             vxlan_id=vni, vxlan_link=under.index, vxlan_local=local, vxlan_group=group,
                             vxlan_port=port, vxlan_learning=1, ifalias=alias, **kw)
            link = await self.get(name)
            created = True
        await self._bridge_port(link, created, master, alias, isolated, hairpin=False)
        return created

    async def _bridge_port(self, link: LinkInfo, created: bool, master: str, alias: str, isolated: bool,
                           hairpin: bool, bridge: LinkInfo | None = None) -> None:
        """LINK as an up port of bridge MASTER (isolated or not, hairpin or not); a LINK just created
        (CREATED) is deleted when that fails. A port already in place (master, alias, up: a Join, or
        a veth made so) only gets its port flags set again (they are not in LinkInfo)."""
        try:
            bridge = bridge or await self.get(master)
            if bridge is None:
                raise KernelError(f"bridge {master} is missing")
            if (link.master, link.alias, link.up) != (bridge.index, alias, True):
                await self._set(f"attach {link.name} to {master}", index=link.index, master=bridge.index, alias=alias,
                                up=True)
            await self._kernel(f"set bridge port flags on {link.name}", self._nl.brport, link.index,
                               isolated=isolated, hairpin=hairpin)
        except BaseException:
            if created:
                await self.delete(link.name)
            raise
