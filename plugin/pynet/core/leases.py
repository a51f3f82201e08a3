"""DHCP lease keeping for containers of `--ipam-driver pynet` networks: renewals, release, hostname.

Called from the core (the IPAM driver takes and releases leases, Join announces the
hostname, DeleteNetwork releases what is left); it never calls back into the core.
A renewal task per (network, MAC), so the same MAC on two DHCP networks keeps both.
Network exchanges happen outside the network's lock (a silent server must not hold
up every call of the network); the lock is taken only to store the result.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from .. import dhcp
from ..errors import NotFound

log = logging.getLogger("pynet.leases")


class Leases:
    def __init__(self, state, client=None, renew_after: float = 0.0):
        self.state = state
        self.client = client or dhcp.Client()
        self.renew_after = renew_after  # tests: renew this long after each ACK instead of at T1
        self.tasks: dict[tuple[str, str], asyncio.Task] = {}

    def start_all(self) -> None:
        for net in self.state.nets.values():
            for mac in net.leases:
                self.start(net.id, mac)

    def start(self, net_id: str, mac: str) -> None:
        self.stop(net_id, mac)
        task = asyncio.create_task(self._renew_loop(net_id, mac), name=f"dhcp-renew-{net_id[:12]}-{mac}")
        self.tasks[(net_id, mac)] = task
        task.add_done_callback(lambda t, key=(net_id, mac): self.tasks.get(key) is t and self.tasks.pop(key))

    def stop(self, net_id: str, mac: str) -> None:
        task = self.tasks.pop((net_id, mac), None)
        if task is not None:
            task.cancel()

    async def stop_all(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def release(self, net, mac: str) -> None:
        """Under the network's lock: DHCPRELEASE and forget (best effort: the lease goes anyway)."""
        self.stop(net.id, mac)
        held = net.leases.pop(mac, None)
        if held is None:
            return
        lease = dhcp.Lease(**held)
        try:
            await self.client.release(net.parent, lease)
        except Exception as e:  # noqa: BLE001 - the lease is forgotten anyway
            log.warning("DHCP release failed", extra={"fields": {"mac": mac, "error": str(e)}})
        log.info("lease released", extra={"fields": {"mac": mac, "ip": lease.ip}})

    async def release_all(self, net) -> None:
        for mac in list(net.leases):
            await self.release(net, mac)

    async def renew_now(self, net_id: str, mac: str, hostname: str | None = None) -> dhcp.Lease:
        net = self.state.network(net_id)
        held = net.leases.get(mac)
        if held is None:
            raise NotFound(f"no DHCP lease for {mac}")
        lease = dhcp.Lease(**held)
        if hostname is not None:
            lease.hostname = hostname
        new = await self.client.renew(net.parent, lease, rebind=time.time() > lease.acquired + lease.t2)
        async with self.state.locked(net_id) as known:
            if known and mac in net.leases:  # not released meanwhile
                net.leases[mac] = new.to_dict()
                self.state.save(net)
        log.info("lease renewed", extra={"fields": {"mac": mac, "ip": new.ip, "renewals": new.renewals}})
        return new

    async def _renew_loop(self, net_id: str, mac: str) -> None:
        last_attempt = None
        while True:
            net = self.state.nets.get(net_id)
            if net is None or mac not in net.leases:
                return
            lease = dhcp.Lease(**net.leases[mac])
            action, at = dhcp.next_action(lease, time.time(), last_attempt)
            if self.renew_after and last_attempt is None:
                action, at = "renew", lease.acquired + self.renew_after
            if at > time.time():
                await asyncio.sleep(at - time.time())
            if action == "expired":
                log.error("DHCP lease expired: no server renewed it", extra={"fields": {"mac": mac, "ip": lease.ip}})
                return
            try:
                await self.renew_now(net_id, mac)
                last_attempt = None
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - keep trying until the lease runs out
                last_attempt = time.time()
                log.warning("DHCP renewal failed", extra={"fields": {"mac": mac, "ip": lease.ip, "error": str(e)}})

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
    """The hostname of a process in the namespace at `sandbox` (a managed plugin cannot see it: "")."""
    try:
        ino = os.stat(sandbox).st_ino
    except OSError:
        return ""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino != ino:
                continue
            with open(f"/proc/{pid}/root/etc/hostname") as fh:
                return fh.read().strip()
        except OSError:
            continue
    return ""
