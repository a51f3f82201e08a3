"""DHCP lease keeping for containers of `--ipam-driver pynet` networks: renewals, expiry, release, hostname.

Called from the core (the IPAM driver keeps and releases leases, Join announces the hostname,
DeleteNetwork releases what is left); it never calls back into the core. A renewal task per
(network, MAC, family): the same MAC on two DHCP networks, or with DHCPv4 and DHCPv6, keeps each.
Network exchanges happen outside the network's lock (a silent server must not hold up every call of
the network); the lock is taken only to store the result.

When a lease ends with no server renewing it (it expires, or the server NAKs it), the address is
taken away: removed from the container's interface (through its namespace; a managed plugin cannot
see it and only logs), the lease kept and shown as lost (`pynet leases`), logged as an error. Docker
still lists the address (a driver cannot change it). pynet then asks for the same address every
LOST_RETRY seconds (DHCPv4 INIT-REBOOT, DHCPv6 REBIND): when a server grants it, it is put back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import NamedTuple

from .. import dhcp
from ..dhcp import client6
from ..dhcp.lease import Lease6, next_action6
from ..errors import NotFound

log = logging.getLogger("pynet.leases")
LOST_RETRY = 60.0


class Family(NamedTuple):
    table: str  # the Network field holding MAC -> lease dict
    load: type  # dict -> lease
    next_action: object
    label: str


FAMILIES = {4: Family("leases", dhcp.Lease, dhcp.next_action, "DHCP"),
            6: Family("leases6", Lease6, next_action6, "DHCPv6")}


class Leases:
    def __init__(self, state, links, client=None, client6_=None, renew_after: float = 0.0):
        self.state = state
        self.links = links
        self.client = client or dhcp.Client()
        self.client6 = client6_ or client6.Client6()
        self.renew_after = renew_after  # tests: renew this long after each ACK instead of at T1
        self.lost_retry = LOST_RETRY
        self.tasks: dict[tuple[str, str, int], asyncio.Task] = {}
        self.renewal_failures = 0  # since start, for the metrics

    def _client(self, v: int):
        return self.client if v == 4 else self.client6

    @staticmethod
    def table(net, v: int) -> dict:
        return getattr(net, FAMILIES[v].table)

    # ------------------------------------------------------------ tasks
    def start_all(self) -> None:
        for net in self.state.nets.values():
            for v in FAMILIES:
                for mac in self.table(net, v):
                    self.start(net.id, mac, v)

    def start(self, net_id: str, mac: str, v: int = 4) -> None:
        self.stop(net_id, mac, v)
        key = (net_id, mac, v)
        task = asyncio.create_task(self._loop(*key), name=f"dhcp{v}-renew-{net_id[:12]}-{mac}")
        self.tasks[key] = task
        task.add_done_callback(lambda t, key=key: self.tasks.get(key) is t and self.tasks.pop(key))

    def stop(self, net_id: str, mac: str, v: int = 4) -> None:
        task = self.tasks.pop((net_id, mac, v), None)
        if task is not None:
            task.cancel()

    async def stop_all(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------ keep, release
    async def keep(self, net, lease, v: int) -> str:
        """Under no lock: store a new lease (one per MAC: a concurrent request's lease wins, this one goes
        back to the server); the address (CIDR) Docker gets."""
        try:
            lock = self.state.lock(net.id)
        except NotFound:  # the network went while the server answered
            await self._give_back(net, lease, v)
            raise
        async with lock:
            held = self.table(net, v).get(lease.mac)
            if held is not None:
                await self._give_back(net, lease, v)
                return f"{held['ip']}/{held['prefixlen']}"
            self.table(net, v)[lease.mac] = lease.to_dict()
            try:
                self.state.save(net)
            except BaseException:
                self.table(net, v).pop(lease.mac, None)
                await self._give_back(net, lease, v)
                raise
        log.info("lease acquired", extra={"fields": {"family": v, "mac": lease.mac, "ip": lease.ip,
                                                     "hostname": lease.hostname, "identity": lease.identity}})
        self.start(net.id, lease.mac, v)
        return f"{lease.ip}/{lease.prefixlen}"

    async def _give_back(self, net, lease, v: int) -> None:
        try:
            await self._client(v).release(net.parent, lease)
        except Exception as e:  # noqa: BLE001 - the lease is forgotten anyway
            log.warning(f"{FAMILIES[v].label} release failed", extra={"fields": {"mac": lease.mac, "error": str(e)}})

    async def release(self, net, mac: str, v: int = 4) -> None:
        """Under the network's lock: RELEASE and forget (best effort: the lease goes anyway)."""
        self.stop(net.id, mac, v)
        held = self.table(net, v).pop(mac, None)
        if held is None:
            return
        lease = FAMILIES[v].load(**held)
        if not lease.lost_at:
            await self._give_back(net, lease, v)
        log.info("lease released", extra={"fields": {"family": v, "mac": mac, "ip": lease.ip}})

    async def release_ip(self, net, ip: str, v: int) -> None:
        """Under the network's lock: the lease of address `ip`, if any."""
        for mac, held in list(self.table(net, v).items()):
            if held["ip"] == ip:
                await self.release(net, mac, v)
                self.state.save(net)

    async def release_all(self, net) -> None:
        for v in FAMILIES:
            for mac in list(self.table(net, v)):
                await self.release(net, mac, v)

    # ------------------------------------------------------------ renewals
    async def renew_now(self, net_id: str, mac: str, hostname: str | None = None, v: int = 4, reboot: bool = False):
        net = self.state.network(net_id)
        held = self.table(net, v).get(mac)
        if held is None:
            raise NotFound(f"no {FAMILIES[v].label} lease for {mac}")
        lease = FAMILIES[v].load(**held)
        if hostname is not None:
            lease.hostname, lease.domain = hostname, net.dhcp_domain
        client = self._client(v)
        if reboot:
            new = await (client.reboot(net.parent, lease) if v == 4 else client.renew(net.parent, lease, rebind=True))
        else:
            new = await client.renew(net.parent, lease, rebind=time.time() > lease.acquired + lease.t2)
        async with self.state.locked(net_id) as known:
            if known and mac in self.table(net, v):  # not released meanwhile
                self.table(net, v)[mac] = new.to_dict()
                self.state.save(net)
        log.info("lease renewed", extra={"fields": {"family": v, "mac": mac, "ip": new.ip, "renewals": new.renewals}})
        return new

    async def _loop(self, net_id: str, mac: str, v: int) -> None:
        last_attempt = None
        while True:
            net = self.state.nets.get(net_id)
            held = self.table(net, v).get(mac) if net else None
            if held is None:
                return
            lease = FAMILIES[v].load(**held)
            if lease.lost_at:
                await asyncio.sleep(self.lost_retry)
                await self._get_back(net_id, mac, v)
                continue
            action, at = FAMILIES[v].next_action(lease, time.time(), last_attempt)
            if self.renew_after and last_attempt is None:
                action, at = "renew", lease.acquired + self.renew_after
            if at > time.time():
                await asyncio.sleep(at - time.time())
            if action == "expired":
                await self._lose(net_id, mac, v, "expired: no server renewed it")
                continue
            try:
                await self.renew_now(net_id, mac, v=v)
                last_attempt = None
            except asyncio.CancelledError:
                raise
            except dhcp.DhcpNak as e:
                await self._lose(net_id, mac, v, f"refused by the server: {e}")
            except Exception as e:  # noqa: BLE001 - keep trying until the lease runs out
                last_attempt = time.time()
                self.renewal_failures += 1
                log.warning(f"{FAMILIES[v].label} renewal failed", extra={"fields": {
                    "mac": mac, "ip": lease.ip, "error": str(e)}})

    # ------------------------------------------------------------ a lease that ended
    def _endpoint_sandbox(self, net, mac: str) -> str:
        return next((ep.sandbox for ep in net.endpoints.values() if ep.mac == mac and ep.sandbox), "")

    async def _container_addr(self, net, lease, present: bool) -> str:
        """Put the address on (or take it off) the container's interface; what happened, for the log."""
        sandbox = self._endpoint_sandbox(net, lease.mac)
        if not sandbox:
            return "no running container holds it"
        try:
            done = await self.links.container_addr(sandbox, lease.mac, f"{lease.ip}/{lease.prefixlen}", present)
        except Exception as e:  # noqa: BLE001 - a managed plugin cannot see the namespace
            return f"not changed in the container: {e}"
        return ("added to" if present else "removed from") + " the container's interface" if done else "unchanged"

    async def _lose(self, net_id: str, mac: str, v: int, why: str) -> None:
        async with self.state.locked(net_id) as known:
            net = self.state.nets.get(net_id) if known else None
            held = self.table(net, v).get(mac) if net else None
            if held is None:
                return
            lease = FAMILIES[v].load(**held)
            lease.lost_at, lease.lost_why = time.time(), why
            self.table(net, v)[mac] = lease.to_dict()
            self.state.save(net)
            done = await self._container_addr(net, lease, present=False)
        log.error(f"{FAMILIES[v].label} lease lost: address taken away", extra={"fields": {
            "mac": mac, "ip": lease.ip, "why": why, "container": done}})

    async def _get_back(self, net_id: str, mac: str, v: int) -> None:
        try:
            await self.renew_now(net_id, mac, v=v, reboot=True)  # clears lost_at: a fresh lease
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - still lost; tried again later
            log.info(f"{FAMILIES[v].label} lease still lost", extra={"fields": {"mac": mac, "error": str(e)}})
            return
        async with self.state.locked(net_id) as known:
            net = self.state.nets.get(net_id) if known else None
            held = self.table(net, v).get(mac) if net else None
            done = await self._container_addr(net, FAMILIES[v].load(**held), present=True) if held else "released"
        log.warning(f"{FAMILIES[v].label} lease bound again", extra={"fields": {"mac": mac, "container": done}})

    # ------------------------------------------------------------ hostname (engines before Docker 29)
    async def announce_hostname(self, net_id: str, mac: str, sandbox: str, timeout: float = 30.0) -> None:
        """After Join: find the container's hostname (its namespace's first process) and renew with it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            name = _hostname_in_netns(sandbox)
            if name:
                try:
                    await self.renew_now(net_id, mac, hostname=name)
                except Exception as e:  # noqa: BLE001
                    log.warning("hostname announce failed", extra={"fields": {"mac": mac, "error": str(e)}})
                return
            await asyncio.sleep(0.5)


def _hostname_in_netns(sandbox: str) -> str:
    """The hostname of a container process in the namespace at `sandbox` (a managed plugin cannot see it: "").

    Processes with the host's root are skipped: while a container starts, Docker's hooks run in its
    namespace with the host's files, and the host's hostname is not the container's."""
    try:
        ino = os.stat(sandbox).st_ino
        host_root = os.stat("/")
    except OSError:
        return ""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino != ino:
                continue
            root = os.stat(f"/proc/{pid}/root")
            if (root.st_dev, root.st_ino) == (host_root.st_dev, host_root.st_ino):
                continue
            with open(f"/proc/{pid}/root/etc/hostname") as fh:
                return fh.read().strip()
        except OSError:
            continue
    return ""
