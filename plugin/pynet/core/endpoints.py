"""Endpoints: CreateEndpoint, Join, Leave, DeleteEndpoint, EndpointOperInfo.

Each call: validate (options.build_endpoint, the mode's checks) -> apply with an undo
stack (the mode's kernel work, its firewall elements) -> persist -> answer. Deletes save
their intent first (Docker ignores a driver's error there, and retries with an empty
body): the next start finishes them.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging

from .. import faults, limits, options
from ..errors import Conflict, KernelError, PynetError
from ..model import Endpoint, JoinInfo, Network
from ..modes import CREATED, GONE
from .state import Part
from .undo import Undo

log = logging.getLogger("pynet.endpoints")


@functools.lru_cache(maxsize=16384)
def _ip(cidr: str):
    """An address parsed once (~3 us each: every CreateEndpoint compares with the whole network)."""
    return ipaddress.ip_interface(cidr).ip


def _addresses(ep: Endpoint) -> set:
    return {_ip(x) for x in (ep.ipv4, ep.ipv6) if x}


class Endpoints(Part):
    def __init__(self, *part, guard):
        super().__init__(*part)
        self.guard = guard

    async def create(self, req) -> str | None:
        """Returns the MAC to give Docker, or None when Docker chose it."""
        net = self.state.network(req.network_id)
        mode = self.modes[net.mode]
        ep = options.build_endpoint(req, net, self.prefix, mode)
        if mode.lan and ep.id not in net.endpoints:
            # Never the host's address, never one in use on the LAN: checked (and probed on the parent)
            # before the network's lock and before anything exists (core/guard.py).
            await self.guard.admit(net, ep)
        async with self.state.lock(req.network_id):
            net = self.state.network(req.network_id)  # may have gone while we waited
            old = net.endpoints.get(ep.id)
            if old is not None:
                ep = old  # Docker retried, or re-creates after a reboot: make it whole again
            else:
                await self._refuse_or_evict(net, ep)
            undo = Undo()
            try:
                await mode.ensure_endpoint(net, ep, undo)
                rates = limits.effective(net.limits, ep.limits)
                if rates:
                    undo.push("remove limits", mode.limit, net, ep, limits.Rates(), rates)
                    await mode.limit(net, ep, rates)
                faults.point("create_endpoint:kernel")
                elems = mode.endpoint_elements(net, ep)
                await self.firewall.add(elems)
                undo.push("remove firewall elements", self.firewall.remove, elems)
                faults.point("create_endpoint:firewall")
                if old is None:
                    net.endpoints[ep.id] = ep
                    undo.push("forget endpoint", net.endpoints.pop, ep.id, None)
                    self.state.save(net, ep)
                faults.point("create_endpoint:saved")
            except BaseException:
                await undo.run()
                raise
        return None if ep.mac_from_docker else ep.mac

    async def _refuse_or_evict(self, net: Network, ep: Endpoint) -> None:
        """Another endpoint with its address or MAC: a ghost is replaced, a live one refuses the new."""
        mode = self.modes[net.mode]
        mine = _addresses(ep)  # every endpoint of the network is compared: each address parsed once (_ip)
        for other in list(net.endpoints.values()):
            same_ip = (other.ipv4 and _ip(other.ipv4) in mine) or (other.ipv6 and _ip(other.ipv6) in mine)
            if not same_ip and other.mac != ep.mac:
                continue
            state = await mode.endpoint_state(net, other)
            if state == GONE or (same_ip and state == CREATED):
                # A ghost. Docker's IPAM never hands out a live endpoint's address, so one handed
                # out again is not Docker's: its DeleteEndpoint was lost while pynet was down, or
                # pynet died after saving it but before answering. A MAC proves nothing
                # (`--mac-address` is the user's): only an endpoint whose container side is gone
                # is replaced then. One in a container is never evicted.
                await self.forget(net, other, "stale: its address is handed out again" if same_ip
                                  else "stale: its container is gone")
                continue
            if same_ip:
                raise Conflict(f"address {ep.ipv4 or ep.ipv6} is already used by endpoint {other.id[:12]}")
            raise Conflict(f"MAC address {ep.mac} is already used by endpoint {other.id[:12]} on this network; "
                           f"pick another --mac-address")

    async def forget(self, net: Network, ep: Endpoint, why: str) -> None:
        """Under the network's lock: a ghost goes, kernel errors ignored (it is not Docker's)."""
        log.warning("endpoint removed", extra={"fields": {"endpoint": ep.id[:12], "why": why}})
        await self.published.unpublish(net, ep, ep.bindings)
        await self.firewall.remove(self.modes[net.mode].endpoint_elements(net, ep))
        await self.modes[net.mode].delete_endpoint(net, ep)
        net.endpoints.pop(ep.id, None)
        self.state.save(net)

    async def delete(self, ref) -> None:
        async with self.state.locked(ref.network_id) as known:
            ep = self.state.nets[ref.network_id].endpoints.get(ref.endpoint_id) if known else None
            if ep is not None:  # else already gone: Docker repeats this at start-up
                await self.delete_now(self.state.nets[ref.network_id], ep)

    async def delete_now(self, net: Network, ep: Endpoint) -> None:
        """Under the network's lock; intent saved first (Docker ignores errors here), the call's only
        write: the endpoint's row goes with the next transaction (a crash before: finished at start).
        Its links are retired (out of service now, unregistered in the background)."""
        if not ep.deleting:
            ep.deleting = True
            try:
                self.state.save(net, ep)
            except BaseException:
                ep.deleting = False
                raise
        mode = self.modes[net.mode]
        await self.published.unpublish(net, ep, ep.bindings)
        faults.point("delete_endpoint:ports")
        await self.firewall.remove(mode.endpoint_elements(net, ep))
        errors = await mode.delete_endpoint(net, ep)
        if errors:
            raise KernelError(f"endpoint {ep.id[:12]} not fully removed: {'; '.join(errors)}")
        faults.point("delete_endpoint:kernel")
        self.state.forget_endpoint(net, ep.id)
        faults.point("delete_endpoint:saved")

    def oper_info(self, ref) -> dict:
        net, ep = self.state.endpoint(ref.network_id, ref.endpoint_id)
        return {"mac": ep.mac, "ipv4": ep.ipv4, "ipv6": ep.ipv6, "host_if": ep.host_if, "bridge": net.bridge}

    async def join(self, req) -> JoinInfo:
        async with self.state.lock(req.network_id):
            net, ep = self.state.endpoint(req.network_id, req.endpoint_id)
            mode = self.modes[net.mode]
            # After a reboot Docker joins endpoints whose links went with the old namespace.
            await mode.ensure_endpoint(net, ep, Undo())
            rates = limits.effective(net.limits, ep.limits)
            if rates:
                await mode.limit(net, ep, rates)
            await self.firewall.add(mode.endpoint_elements(net, ep))
            faults.point("join:kernel")
            try:
                await mode.announce(net, ep)
            except PynetError as e:
                log.warning("announce failed", extra={"fields": {"endpoint": ep.id[:12], "error": str(e)}})
            if ep.sandbox != req.sandbox:
                ep.sandbox = req.sandbox
                self.state.save(net, ep)
            faults.point("join:saved")
            held = net.leases.get(ep.mac) if net.ipam == "dhcp" else None
            if held is not None and req.sandbox and not held.get("hostname"):
                # Docker before 29 names no container when the lease is taken: give the server its hostname.
                asyncio.create_task(self.leases.announce_hostname(net.id, ep.mac, req.sandbox))
            return mode.join_info(net, ep)

    async def leave(self, ref) -> None:
        cli, sandbox = [], ""
        async with self.state.locked(ref.network_id) as known:
            net = self.state.nets.get(ref.network_id) if known else None
            ep = net.endpoints.get(ref.endpoint_id) if net else None
            if ep is not None and (ep.sandbox or ep.bindings or ep.parked or ep.gateway):
                # Ports leave with the endpoint (Docker 29 sends no Revoke after a live-restore
                # restart, so Leave must take them too); `pynet port add` ones go on to the
                # container's next gateway endpoint, if it has another one.
                sandbox = ep.sandbox
                cli = await self.published.leave(net, ep)
                ep.sandbox = ""
                self.state.save(net, ep)
        if cli and sandbox:
            await self.published.hand_over(sandbox, ref.endpoint_id, cli)
