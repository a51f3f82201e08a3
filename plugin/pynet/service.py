"""The driver's logic: validate -> plan -> apply (with undo) -> persist -> answer.

Handlers call this; this calls kernel/ through injected objects (`links`,
`firewall`), so unit tests run it against fakes. One lock per network, plus one
for the set of networks (subnet overlaps and bridge names are checked across
networks); calls for different networks' endpoints never wait on each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket

from . import faults, options, ports
from .config import Config, parse_port_range
from .errors import Conflict, InvalidOption, KernelError, NotFound, PynetError
from .kernel import sysctl
from .model import Binding, Endpoint, Network, PortMapping, to_dict
from .modes import CREATED, GONE, Mode
from .modes.l2bridge import L2BridgeMode
from .modes.nat import NatMode
from .modes.transparent import TransparentMode
from .store import Store

log = logging.getLogger("pynet.service")


class Undo:
    """Inverse steps registered while applying; run in reverse on failure, never raising."""

    def __init__(self) -> None:
        self.steps: list = []

    def push(self, what: str, fn, *args) -> None:
        self.steps.append((what, fn, args))

    async def run(self) -> None:
        for what, fn, args in reversed(self.steps):
            try:
                result = fn(*args)
                if asyncio.iscoroutine(result):
                    await result
            except Exception as e:  # noqa: BLE001 - undo must go on
                log.error("undo step failed", extra={"fields": {"step": what, "error": str(e)}})
        self.steps.clear()


class Service:
    def __init__(self, cfg: Config, store: Store, links, firewall, sysctl_ensure=sysctl.ensure):
        self.cfg = cfg
        self.store = store
        self.links = links
        self.firewall = firewall
        self.sysctl = sysctl_ensure
        self.nets: dict[str, Network] = {}
        # One lock per KNOWN network (made with it, dropped with it): a call naming an unknown
        # network never adds one, so refused calls cannot grow this table.
        self._locks: dict[str, asyncio.Lock] = {}
        self._nets_lock = asyncio.Lock()
        # Host ports are host-wide: allocation across networks is serialised by this lock
        # (held for microseconds: index lookups and one nft transaction).
        self._ports_lock = asyncio.Lock()
        self.port_index = ports.PortIndex()
        self.port_range = parse_port_range(cfg.port_range) if cfg.port_range else _kernel_port_range()
        self.port_probe = ports.host_port_free
        self.leftovers_removed: list[str] = []
        self.modes: dict[str, Mode] = {
            "nat": NatMode(links, self.sysctl, cfg.owner_tag),
            "transparent": TransparentMode(links, self.sysctl, cfg.owner_tag),
            "l2bridge": L2BridgeMode(links, self.sysctl, cfg.owner_tag),
        }
        from .ipam import DhcpIpam

        self.ipam = DhcpIpam(self)
        kinds = "nhks"
        n = 15 - len(cfg.link_prefix) - 1
        self._our_name = re.compile(re.escape(cfg.link_prefix) + f"[{kinds}][0-9a-z]{{{n}}}$")

    # ---------------------------------------------------------------- start-up
    async def start(self) -> None:
        """Load state and make the kernel agree with it (reconcile)."""
        self.store.ensure()
        self.nets = self.store.load_all()
        self.port_index = ports.PortIndex.from_networks(self.nets.values())
        await self.reconcile()
        self.ipam.start_all()  # DHCP renewals go on across restarts

    async def reconcile(self) -> dict:
        report = {"links_created": [], "leftovers_removed": [], "endpoints_missing": [], "deletes_finished": [],
                  "errors": []}
        async with self._nets_lock, self.all_locks():
            for restored in self.store.load_missing(self.nets):
                log.warning("network state restored by an operator", extra={"fields": {"network": restored.id[:12]}})
                self.nets[restored.id] = restored
                for ep in restored.endpoints.values():
                    for b in ep.bindings:
                        self.port_index.add(restored.id, ep.id, b)
            self.store.scan_damaged()
            nets = list(self.nets.values())
            self.firewall.preserve = bool(self.store.damaged)
            if nets:
                self._forwarding(any(n.ipv6 for n in nets))
            for net in nets:
                if net.deleting:
                    continue  # finished below, once the firewall is whole
                mode = self.mode(net)
                try:
                    undo = Undo()
                    await mode.ensure_network(net, undo)
                    report["links_created"] += [what for what, _fn, _a in undo.steps]
                except PynetError as e:
                    report["errors"].append(f"network {net.id[:12]}: {e}")
                for ep in list(net.endpoints.values()):
                    if ep.deleting:
                        continue
                    if not await mode.endpoint_alive(net, ep):
                        # The container side went with its namespace (reboot, crash): Docker
                        # joins it again (and re-programs its ports) or deletes it. Until then
                        # it holds no host port, so a ghost cannot block a new container.
                        report["endpoints_missing"].append(ep.id[:12])
                        if ep.bindings:
                            for b in ep.bindings:
                                self.port_index.remove(ep.id, b)
                            ep.bindings = []
                            self.store.save(net)
                        continue
                    try:
                        await mode.repair_endpoint(net, ep)
                    except PynetError as e:
                        report["errors"].append(f"endpoint {ep.id[:12]}: {e}")
            report["leftovers_removed"] = await self._remove_leftovers()
            report["leftovers_removed"] += await self._sweep_rules()
            self.leftovers_removed = report["leftovers_removed"]
            await self.firewall.rebuild(nets)
            # DeleteNetwork/DeleteEndpoint that pynet died in: Docker will not send them again.
            for net in nets:
                try:
                    if net.deleting:
                        await self._delete_network(net)
                        report["deletes_finished"].append(net.id[:12])
                        continue
                    for ep in [e for e in net.endpoints.values() if e.deleting]:
                        await self._delete_endpoint(net, ep)
                        report["deletes_finished"].append(ep.id[:12])
                except PynetError as e:
                    report["errors"].append(f"unfinished delete in network {net.id[:12]}: {e}")
            await self.sync_docker_user()
        log.info("reconciled", extra={"fields": {"networks": len(nets), **{k: len(v) for k, v in report.items()}}})
        return report

    def expected_links(self) -> set[str]:
        names: set[str] = set()
        for net in self.nets.values():
            names |= self.mode(net).link_names(net)
        return names

    async def find_drift(self) -> list[str]:
        """What the state says exists on the host side but the kernel lacks (reconcile repairs it)."""
        present = {link.name for link in await self.links.list()}
        out = []
        for net in self.nets.values():
            for name in (net.bridge, net.shim, net.parent if net.lan else ""):
                if name and name not in present:
                    out.append(f"network {net.id[:12]}: interface {name} missing")
            for ep in net.endpoints.values():
                if ep.host_if and ep.host_if not in present and not ep.deleting:
                    out.append(f"endpoint {ep.id[:12]}: host interface {ep.host_if} missing "
                               f"(container gone while pynet was down?)")
        return out

    async def find_leftovers(self) -> list[str]:
        """Links this daemon made (by alias tag or by exact name shape) that belong to nothing."""
        expected = self.expected_links()
        out = []
        for link in await self.links.list():
            ours = link.alias.startswith(self.cfg.owner_tag) or self._our_name.match(link.name or "")
            if ours and link.name not in expected:
                out.append(link.name)
        return out

    async def _remove_leftovers(self) -> list[str]:
        if self.store.problems:
            # A network whose state file is corrupt still has live links: removing them as
            # leftovers would cut its containers off. Keep everything until a human decides.
            log.error("leftover removal skipped: corrupt state files", extra={"fields": {
                "problems": self.store.problems}})
            return []
        removed = []
        for name in await self.find_leftovers():
            try:
                await self.links.delete(name)
                removed.append(name)
            except PynetError as e:
                log.error("leftover not removed", extra={"fields": {"link": name, "error": str(e)}})
        return removed

    async def _sweep_rules(self) -> list[str]:
        """l2bridge policy rules (iif <our veth> lookup <net table>) that belong to no endpoint.

        A crash between creating a container's rule and saving its endpoint leaves one;
        its veth goes as a leftover link, the rule (kept by name) goes here."""
        from .modes.l2bridge import RULE_PRIORITY

        if self.store.problems:
            return []
        expected = {(fam, ep.host_if) for net in self.nets.values() if net.mode == "l2bridge"
                    for ep in net.endpoints.values()
                    for fam, addr in ((socket.AF_INET, ep.ipv4), (socket.AF_INET6, ep.ipv6)) if addr}
        removed = []
        for family, iif, table in await self.links.rules(RULE_PRIORITY):
            if iif.startswith(self.cfg.link_prefix) and (family, iif) not in expected:
                try:
                    await self.links.delete_rule(iif, table, RULE_PRIORITY, family)
                    removed.append(f"rule iif {iif} lookup {table}")
                except PynetError as e:
                    log.error("stale rule not removed", extra={"fields": {"iif": iif, "error": str(e)}})
        return removed

    async def check_firewall(self) -> None:
        """Periodic: Docker or a firewall reload may have flushed our rules."""
        async with self._nets_lock:
            nets = list(self.nets.values())
            if nets and not await self.firewall.table_present():
                log.warning("nftables table missing, rebuilding", extra={"fields": {"table": self.cfg.table}})
                await self.firewall.repair()
            await self.sync_docker_user()

    async def free_ports_of_gone_endpoints(self) -> list[str]:
        """Periodic: a container that died while dockerd was down may never get its Leave (Docker
        drops a legacy plugin's endpoints silently on restart): once its veth is gone, its host
        ports are freed, so they cannot block a new container. The endpoint itself stays until
        Docker deletes it or its address is handed out again."""
        present = {link.name for link in await self.links.list()}
        freed = []
        for net in list(self.nets.values()):
            gone = [ep for ep in net.endpoints.values()
                    if ep.bindings and ep.host_if and ep.host_if not in present and not ep.deleting]
            if not gone or net.id not in self.nets:
                continue
            async with self.lock(net.id):
                for ep in gone:
                    if ep.id in net.endpoints and await self.mode(net).endpoint_state(net, ep) == GONE:
                        log.warning("ports freed: the endpoint's container is gone", extra={"fields": {
                            "endpoint": ep.id[:12], "ports": len(ep.bindings)}})
                        await self._unpublish(net, ep, ep.bindings)
                        ep.gateway = False
                        self.store.save(net)
                        freed.append(ep.id[:12])
        return freed

    async def sync_docker_user(self, forget: tuple[str, ...] = ()) -> None:
        try:
            await self.firewall.sync_docker_user(list(self.nets.values()), forget, keep=bool(self.store.damaged))
        except PynetError as e:
            log.error("DOCKER-USER sync failed", extra={"fields": {"error": str(e)}})

    async def shutdown(self) -> None:
        """Clean stop: kernel objects stay (containers keep networking); an unused table goes."""
        await self.ipam.stop()
        async with self._nets_lock:
            if not self.nets:
                await self.firewall.delete_table()
                await self.sync_docker_user()

    # ---------------------------------------------------------------- helpers
    def lock(self, net_id: str) -> asyncio.Lock:
        """The lock of a known network (NotFound otherwise: nothing is added for unknown IDs)."""
        self.network(net_id)
        return self._locks.setdefault(net_id, asyncio.Lock())

    @contextlib.asynccontextmanager
    async def all_locks(self):
        """Every network's lock, in ID order (reconcile: nothing changes under a full rebuild)."""
        held = []
        try:
            for net_id in sorted(self.nets):
                lock = self._locks.setdefault(net_id, asyncio.Lock())
                await lock.acquire()
                held.append(lock)
            yield
        finally:
            for lock in reversed(held):
                lock.release()

    def mode(self, net: Network) -> Mode:
        return self.modes[net.mode]

    def _forwarding(self, ipv6: bool) -> None:
        self.sysctl("/proc/sys/net/ipv4/ip_forward", "1")
        if ipv6:
            self.sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")

    async def _rebuild_firewall(self, why: str) -> None:
        log.warning("nftables out of step, rewriting the table", extra={"fields": {"why": why}})
        await self.firewall.repair()

    def network(self, net_id: str) -> Network:
        net = self.nets.get(net_id)
        if net is None:
            if net_id in self.store.damaged:
                raise NotFound(f"network {net_id[:12]}'s state file is damaged ({self.store.damaged[net_id]}): "
                               f"see `pynet doctor`; restore the file, or remove it and the network")
            raise NotFound(f"network {net_id[:12]} is not known to pynet ({self.cfg.driver_name}); "
                           f"remove it with `docker network rm` and create it again")
        return net

    def endpoint(self, net_id: str, ep_id: str) -> tuple[Network, Endpoint]:
        net = self.network(net_id)
        ep = net.endpoints.get(ep_id)
        if ep is None:
            raise NotFound(f"endpoint {ep_id[:12]} of network {net_id[:12]} is not known to pynet")
        return net, ep

    # ---------------------------------------------------------------- networks
    async def create_network(self, body: dict) -> dict:
        net = options.parse_network(body, self.cfg.link_prefix)
        await self.modes[net.mode].prepare(net)
        async with self._nets_lock:
            old = self.nets.get(net.id)
            if old is not None:
                if to_dict(old) | {"endpoints": {}} != to_dict(net) | {"endpoints": {}}:
                    raise Conflict(f"network {net.id[:12]} already exists with other settings")
                await self.mode(old).ensure_network(old, Undo())  # a retry after a crash: make it whole
                return {}
            await self._evict_ghost_networks(net, body)
            await self._check_conflicts(net)
            undo = Undo()
            try:
                if net.mode == "nat":
                    self._forwarding(net.ipv6)
                await self.mode(net).ensure_network(net, undo)
                faults.point("create_network:kernel")
                await self.firewall.add_network(net)
                undo.push("remove firewall elements", self.firewall.remove_network, net)
                faults.point("create_network:firewall")
                self.nets[net.id] = net
                undo.push("forget network", self.nets.pop, net.id, None)
                self.store.save(net)
                faults.point("create_network:saved")
            except BaseException:
                await undo.run()
                raise
            await self.sync_docker_user()
        return {}

    async def gw_alloc_check(self, body: dict) -> dict:
        """Docker 28+: reserve no gateway address in a LAN mode, whose gateway is the LAN's router
        (the user's --gateway is reserved all the same; without one pynet takes the parent's router)."""
        mode = options.network_mode(body)
        lan = mode in ("transparent", "l2bridge")
        return {"SkipIPv4": lan, "SkipIPv6": lan}

    async def _evict_ghost_networks(self, net: Network, body: dict) -> None:
        """A network pynet saved but Docker never got (pynet died before answering) is a ghost.

        Docker's default IPAM never hands out a pool that overlaps one of its live
        networks, so a CreateNetwork from it with exactly the pools of a pynet
        network without endpoints means that network is not Docker's: without this
        the user's retry after such a crash would fail as an overlap.
        """
        spaces = {str(d.get("AddressSpace")) for key in ("IPv4Data", "IPv6Data")
                  for d in (body.get(key) or []) if isinstance(d, dict)}
        if not spaces or not spaces <= {"LocalDefault", "GlobalDefault"}:
            return
        pools = sorted(s.pool for s in net.v4 + net.v6)
        for other in list(self.nets.values()):
            if other.endpoints or other.mode != net.mode or sorted(s.pool for s in other.v4 + other.v6) != pools:
                continue
            log.warning("network removed", extra={"fields": {"network": other.id[:12], "why": "stale: Docker "
                                                             "creates a network with its pools"}})
            async with self.lock(other.id):
                await self._delete_network(other)
            self._locks.pop(other.id, None)

    async def _check_conflicts(self, net: Network) -> None:
        mine = [ipaddress.ip_network(s.pool) for s in net.v4 + net.v6]
        await self.mode(net).check(net, list(self.nets.values()))
        for other in self.nets.values():
            for s in other.v4 + other.v6:
                theirs = ipaddress.ip_network(s.pool)
                for m in mine:
                    if m.version == theirs.version and m.overlaps(theirs):
                        raise Conflict(f"subnet {m} overlaps {theirs} of pynet network {other.id[:12]}; "
                                       f"pick another --subnet")

    async def delete_network(self, body: dict) -> dict:
        net_id = options.object_id(body, "NetworkID")
        async with self._nets_lock:
            net = self.nets.get(net_id)
            if net is None:
                return {}  # already gone
            async with self.lock(net_id):
                await self._delete_network(net)
            self._locks.pop(net_id, None)
            await self.sync_docker_user(forget=(net.bridge,) if net.custom_bridge else ())
        return {}

    async def _delete_network(self, net: Network) -> None:
        """Under the locks. The intent is saved first: Docker ignores a driver's DeleteNetwork
        error and its retry comes with an empty body, so if pynet dies half way, the next
        start finishes the job (reconcile), or nobody would."""
        if not net.deleting:
            net.deleting = True
            self.store.save(net)
        mode = self.mode(net)
        errors = []
        for ep in list(net.endpoints.values()):
            errors += await mode.delete_endpoint(net, ep)
        faults.point("delete_network:endpoints")
        others = [n for n in self.nets.values() if n.id != net.id]
        errors += await mode.delete_network(net, others)
        faults.point("delete_network:kernel")
        if errors:
            # Keep the state so that `docker network rm` (or the next start) can retry.
            raise KernelError(f"network {net.id[:12]} not fully removed: {'; '.join(errors)}")
        for mac, held in list(net.leases.items()):  # Docker releases them first; just in case
            self.ipam.stop_renewal(mac)
            try:
                await self.ipam.client.release(net.parent, ipam_lease(held))
            except Exception as e:  # noqa: BLE001 - the network goes anyway
                log.warning("DHCP release failed", extra={"fields": {"mac": mac, "error": str(e)}})
        self.store.delete(net.id)
        faults.point("delete_network:saved")
        self.nets.pop(net.id, None)
        for ep in net.endpoints.values():
            for b in ep.bindings:
                self.port_index.remove(ep.id, b)
        try:
            await self.firewall.remove_network(net)
        except KernelError as e:
            await self._rebuild_firewall(str(e))

    # ---------------------------------------------------------------- endpoints
    async def create_endpoint(self, body: dict) -> dict:
        net_id = options.object_id(body, "NetworkID")
        net = self.network(net_id)
        ep = options.parse_endpoint(body, net, self.cfg.link_prefix)
        async with self.lock(net_id):
            net = self.network(net_id)  # may have gone while we waited
            old = net.endpoints.get(ep.id)
            if old is not None:
                ep = old  # Docker retried, or re-creates after a reboot: make it whole again
            else:
                for other in list(net.endpoints.values()):
                    same_ip = ep.ipv4 and other.ipv4 and \
                        ipaddress.ip_interface(other.ipv4).ip == ipaddress.ip_interface(ep.ipv4).ip
                    if not same_ip and other.mac != ep.mac:
                        continue
                    state = await self.mode(net).endpoint_state(net, other)
                    if state == GONE or (same_ip and state == CREATED):
                        # A ghost. Docker's IPAM never hands out a live endpoint's address, so one
                        # handed out again is not Docker's: its DeleteEndpoint was lost while pynet
                        # was down, or pynet died after saving it but before answering. A MAC proves
                        # nothing (`--mac-address` is the user's): only an endpoint whose container
                        # side is gone is replaced then. One in a container is never evicted.
                        await self._forget_endpoint(net, other, "stale: its address is handed out again"
                                                    if same_ip else "stale: its container is gone")
                        continue
                    if same_ip:
                        raise Conflict(f"address {ep.ipv4} is already used by endpoint {other.id[:12]}")
                    raise Conflict(f"MAC address {ep.mac} is already used by endpoint {other.id[:12]} on "
                                   f"this network; pick another --mac-address")
            undo = Undo()
            try:
                await self.mode(net).ensure_endpoint(net, ep, undo)
                faults.point("create_endpoint:kernel")
                await self.firewall.add_endpoint(net, ep)
                undo.push("remove firewall elements", self.firewall.remove_endpoint, net, ep)
                faults.point("create_endpoint:firewall")
                if old is None:
                    net.endpoints[ep.id] = ep
                    undo.push("forget endpoint", net.endpoints.pop, ep.id, None)
                    self.store.save(net)
                faults.point("create_endpoint:saved")
            except BaseException:
                await undo.run()
                raise
        return {"Interface": {"MacAddress": ep.mac}} if not ep.mac_from_docker else {}

    async def _forget_endpoint(self, net: Network, ep: Endpoint, why: str) -> None:
        log.warning("endpoint removed", extra={"fields": {"endpoint": ep.id[:12], "why": why}})
        await self._unpublish(net, ep, ep.bindings)
        try:
            await self.firewall.remove_endpoint(net, ep)
        except KernelError as e:
            await self._rebuild_firewall(str(e))
        await self.mode(net).delete_endpoint(net, ep)
        net.endpoints.pop(ep.id, None)
        self.store.save(net)

    async def delete_endpoint(self, body: dict) -> dict:
        net_id = options.object_id(body, "NetworkID")
        ep_id = options.object_id(body, "EndpointID")
        net = self.nets.get(net_id)
        if net is None:
            return {}
        async with self.lock(net_id):
            ep = net.endpoints.get(ep_id)
            if ep is None:
                return {}  # already gone: Docker repeats this at start-up
            await self._delete_endpoint(net, ep)
        return {}

    async def _delete_endpoint(self, net: Network, ep: Endpoint) -> None:
        """Under the network's lock; intent saved first, as for networks (Docker ignores errors here)."""
        ep_id = ep.id
        if not ep.deleting:
            ep.deleting = True
            self.store.save(net)
        await self._unpublish(net, ep, ep.bindings)
        faults.point("delete_endpoint:ports")
        try:
            await self.firewall.remove_endpoint(net, ep)
        except KernelError as e:
            await self._rebuild_firewall(str(e))
        errors = await self.mode(net).delete_endpoint(net, ep)
        if errors:
            raise KernelError(f"endpoint {ep_id[:12]} not fully removed: {'; '.join(errors)}")
        faults.point("delete_endpoint:kernel")
        del net.endpoints[ep_id]
        self.store.save(net)
        faults.point("delete_endpoint:saved")

    async def endpoint_info(self, body: dict) -> dict:
        net, ep = self.endpoint(options.object_id(body, "NetworkID"), options.object_id(body, "EndpointID"))
        return {"Value": {"mac": ep.mac, "ipv4": ep.ipv4, "ipv6": ep.ipv6, "host_if": ep.host_if,
                          "bridge": net.bridge}}

    async def join(self, body: dict) -> dict:
        net_id = options.object_id(body, "NetworkID")
        ep_id = options.object_id(body, "EndpointID")
        sandbox = body.get("SandboxKey") or ""
        if not isinstance(sandbox, str):
            raise options.InvalidRequest("SandboxKey must be a string")
        opts = body.get("Options") or {}
        if not isinstance(opts, dict):
            raise options.InvalidRequest("Options must be an object")
        # Docker sends the container's whole port map with every Join, on every network it joins
        # (an --internal or LAN network too): ports are applied where Docker says, in
        # ProgramExternalConnectivity (the container's gateway endpoint), never refused here.
        options.parse_portmap(opts.get("com.docker.network.portmap"))
        async with self.lock(net_id):
            net, ep = self.endpoint(net_id, ep_id)
            # After a reboot Docker joins endpoints whose links went with the old namespace.
            await self.mode(net).ensure_endpoint(net, ep, Undo())
            await self.firewall.add_endpoint(net, ep)
            faults.point("join:kernel")
            try:
                await self.mode(net).announce(net, ep)
            except PynetError as e:
                log.warning("announce failed", extra={"fields": {"endpoint": ep_id[:12], "error": str(e)}})
            if ep.sandbox != sandbox:
                ep.sandbox = sandbox
                self.store.save(net)
            faults.point("join:saved")
            if net.ipam == "dhcp" and ep.mac in net.leases and sandbox:
                # The lease was taken before the container existed; give the server its hostname.
                asyncio.create_task(self.ipam.announce_hostname(net.id, ep.mac, sandbox))
        return self.mode(net).join_reply(net, ep)

    async def leave(self, body: dict) -> dict:
        net_id = options.object_id(body, "NetworkID")
        ep_id = options.object_id(body, "EndpointID")
        net = self.nets.get(net_id)
        if net is None:
            return {}
        cli: list[PortMapping] = []
        sandbox = ""
        async with self.lock(net_id):
            ep = net.endpoints.get(ep_id)
            if ep is not None and (ep.sandbox or ep.bindings or ep.parked or ep.gateway):
                # Ports leave with the endpoint (Docker 29 sends no Revoke after a live-restore
                # restart, so Leave must take them too). `pynet port add` ports belong to the
                # container: they go on to its next gateway endpoint, if it has another one.
                cli = ep.parked + _as_mappings([b for b in ep.bindings if b.source != "docker"])
                sandbox = ep.sandbox
                await self._unpublish(net, ep, ep.bindings)
                ep.sandbox, ep.parked, ep.gateway = "", [], False
                self.store.save(net)
        if cli and sandbox:
            await self._hand_over(sandbox, ep_id, cli)
        return {}

    async def _hand_over(self, sandbox: str, leaving: str, mappings: list[PortMapping]) -> None:
        """CLI ports of a container's endpoint that left: to its gateway endpoint (or parked on another)."""
        siblings = [(n, e) for n in self.nets.values() for e in n.endpoints.values()
                    if e.sandbox == sandbox and e.id != leaving and not e.deleting and n.mode == "nat"
                    and not n.internal]
        if not siblings:
            log.info("`pynet port add` ports ended with the container's last pynet endpoint",
                     extra={"fields": {"endpoint": leaving[:12], "ports": len(mappings)}})
            return
        net, ep = next(((n, e) for n, e in siblings if e.gateway), siblings[0])
        if net.id not in self.nets:
            return
        async with self.lock(net.id):
            if ep.id not in net.endpoints:
                return
            if not ep.gateway:
                ep.parked += mappings
                self.store.save(net)
                return
            await self._publish_cli(net, ep, mappings)

    # ---------------------------------------------------------------- published ports
    def _check_ports_allowed(self, net: Network, mappings, cli: bool = False) -> None:
        if mappings and net.lan:
            how = "remove -p/-P" if not cli else "publish on a mode=nat network"
            hint = "" if cli else (" (if the container is also on a pynet nat network, make that its gateway "
                                   "network: `docker run --network name=NAT,gw-priority=1` or compose "
                                   "`gw_priority`, Docker 28+)")
            raise InvalidOption(f"published ports (-p/-P) belong to mode=nat; containers of this mode={net.mode} "
                                f"network are reached at their own LAN address: {how}{hint}")
        if mappings and net.internal and cli:
            raise InvalidOption("this network is --internal: it has no way in or out, so no port can be published "
                                "on it; use a network without --internal")

    async def program_external(self, body: dict) -> dict:
        """This endpoint became the container's gateway: Docker's port map is applied here.

        Docker sends the map with every Join too (and 29 sends PEC only to the gateway
        endpoint, Revoke when it stops being it), so this is where ports go, and where
        the container's `pynet port add` ports follow it (from its other pynet endpoints).
        """
        net_id = options.object_id(body, "NetworkID")
        ep_id = options.object_id(body, "EndpointID")
        opts = body.get("Options") or {}
        if not isinstance(opts, dict):
            raise options.InvalidRequest("Options must be an object")
        async with self.lock(net_id):
            net, ep = self.endpoint(net_id, ep_id)
            if "com.docker.network.portmap" in opts:
                mappings = options.parse_portmap(opts.get("com.docker.network.portmap"))
            else:
                mappings = ep.ports
            if net.internal:
                # Docker 29 may make an --internal endpoint the gateway when it is the only one; it has
                # no way in: like Docker's bridge, publish nothing rather than fail the container.
                log.info("ports not published on an --internal network", extra={"fields": {"endpoint": ep_id[:12]}})
                mappings = []
            self._check_ports_allowed(net, mappings)
            old = [b for b in ep.bindings if b.source == "docker"]
            keep_cli = [b for b in ep.bindings if b.source != "docker"]
            before = ep.ports, ep.gateway
            ep.ports, ep.gateway = mappings, True
            try:
                await self._publish(net, ep, mappings, "docker", replace=old, others=keep_cli,
                                    call="program_external")
            except BaseException:
                ep.ports, ep.gateway = before
                raise
        await self._adopt_cli_ports(net, ep)
        return {}

    async def _adopt_cli_ports(self, net: Network, ep: Endpoint) -> None:
        """`pynet port add` ports of this container, parked when its gateway moved, come here.

        Endpoints of one container share Docker's sandbox key. A port that no longer fits
        (another container took its host port meanwhile) stays parked and is logged."""
        if not ep.sandbox or net.internal or net.lan:
            return
        parked: list = []
        for other_net in list(self.nets.values()):
            siblings = [o for o in other_net.endpoints.values()
                        if o.parked and (o.id == ep.id or (o.sandbox == ep.sandbox and not o.deleting))]
            if not siblings or other_net.id not in self.nets:
                continue
            async with self.lock(other_net.id):
                for o in siblings:
                    parked += o.parked
                    o.parked = []
                self.store.save(other_net)
        if not parked or net.id not in self.nets:
            return
        async with self.lock(net.id):
            if ep.id in net.endpoints:
                await self._publish_cli(net, ep, parked)

    async def _publish_cli(self, net: Network, ep: Endpoint, mappings: list[PortMapping]) -> None:
        """Under the network's lock: publish each; one that no longer fits stays parked, logged."""
        for m in mappings:
            try:
                await self._publish(net, ep, [m], "cli", replace=[], others=list(ep.bindings))
            except PynetError as e:
                ep.parked.append(m)
                self.store.save(net)
                log.warning("a `pynet port add` port could not follow the container's gateway",
                            extra={"fields": {"endpoint": ep.id[:12], "port": to_dict(m), "error": str(e)}})

    async def revoke_external(self, body: dict) -> dict:
        """This endpoint stopped being the container's gateway: its ports go (Docker's are sent
        again with the next PEC; `pynet port add` ones are parked until one comes, or it leaves)."""
        net_id = options.object_id(body, "NetworkID")
        ep_id = options.object_id(body, "EndpointID")
        net = self.nets.get(net_id)
        if net is None:
            return {}
        async with self.lock(net_id):
            ep = net.endpoints.get(ep_id)
            if ep is not None and (ep.bindings or ep.gateway):
                ep.parked += _as_mappings([b for b in ep.bindings if b.source != "docker"])
                ep.gateway = False
                await self._unpublish(net, ep, ep.bindings)
                faults.point("revoke_external:firewall")
                self.store.save(net)
                faults.point("revoke_external:saved")
        return {}

    async def _publish(self, net: Network, ep: Endpoint, mappings, source: str, replace: list[Binding],
                       others: list[Binding], call: str = "") -> list[Binding]:
        """Allocate, apply (one nft transaction) and persist; on any failure nothing changes."""
        async with self._ports_lock:
            for b in replace:
                self.port_index.remove(ep.id, b)
            try:
                new = ports.allocate(net, ep, mappings, self.port_index, self.port_range, self.port_probe,
                                     source=source, keep=replace)
            except BaseException:
                for b in replace:
                    self.port_index.add(net.id, ep.id, b)
                raise
            try:
                await self.firewall.change_ports(replace, new)
                faults.point(f"{call}:firewall")
                before = ep.bindings
                ep.bindings = others + new
                try:
                    self.store.save(net)
                    faults.point(f"{call}:saved")
                except BaseException:
                    ep.bindings = before
                    await self.firewall.change_ports(new, replace)
                    raise
            except BaseException:
                for b in new:
                    self.port_index.remove(ep.id, b)
                for b in replace:
                    self.port_index.add(net.id, ep.id, b)
                raise
        return new

    async def _unpublish(self, net: Network, ep: Endpoint, bindings: list[Binding]) -> None:
        """Remove bindings from the kernel and the index; the caller persists."""
        if not bindings:
            return
        gone = list(bindings)
        drop = set(gone)
        async with self._ports_lock:
            ep.bindings = [b for b in ep.bindings if b not in drop]
            for b in gone:
                self.port_index.remove(ep.id, b)
            try:
                await self.firewall.change_ports(gone, [])
            except KernelError as e:
                await self._rebuild_firewall(str(e))

    async def add_ports(self, net_id: str, ep_id: str, specs: list[str]) -> list[Binding]:
        """`pynet port add`: open ports on a running container (kept until it leaves the network)."""
        mappings = [ports.parse_spec(s) for s in specs]
        async with self.lock(net_id):
            net, ep = self.endpoint(net_id, ep_id)
            self._check_ports_allowed(net, mappings, cli=True)
            return await self._publish(net, ep, mappings, "cli", replace=[], others=list(ep.bindings))

    async def remove_ports(self, net_id: str, ep_id: str, specs: list[str]) -> list[Binding]:
        """`pynet port rm`: close ports; a spec without host port closes every binding of that port."""
        mappings = [ports.parse_spec(s) for s in specs]
        async with self.lock(net_id):
            net, ep = self.endpoint(net_id, ep_id)
            by_target: dict[tuple[str, int], list[Binding]] = {}
            for b in ep.bindings:  # one pass: `pynet port rm` of 10,000 ports stays linear
                by_target.setdefault((b.proto, b.container_port), []).append(b)
            gone: dict[Binding, None] = {}
            for m in mappings:
                match = [b for b in by_target.get((m.proto, m.container_port), [])
                         if (not m.host_port or b.host_port == m.host_port)
                         and (not m.host_ip or b.host_ip == m.host_ip)]
                if not match:
                    raise NotFound(f"no published port matches {ports.fmt_host(4, m.host_ip, m.host_port)}->"
                                   f"{m.container_port}/{m.proto} on endpoint {ep_id[:12]}; see `pynet ports`")
                gone.update(dict.fromkeys(match))
            gone = list(gone)
            await self._unpublish(net, ep, gone)
            self.store.save(net)
            return gone

    def list_ports(self, net_id: str = "", ep_id: str = "") -> list[dict]:
        out = []
        for net in self.nets.values():
            if net_id and net.id != net_id:
                continue
            for ep in net.endpoints.values():
                if ep_id and ep.id != ep_id:
                    continue
                out += [dict(to_dict(b), network=net.id, endpoint=ep.id) for b in ep.bindings]
        return out

    # ---------------------------------------------------------------- control API
    def summary(self, net: Network) -> dict:
        return {
            "id": net.id, "mode": net.mode, "bridge": net.bridge, "parent": net.parent, "shim": net.shim,
            "ipam": net.ipam or "docker", "internal": net.internal,
            "ipv6": net.ipv6, "icc": net.icc, "masquerade": net.masquerade, "mtu": net.mtu,
            "subnets": [s.pool for s in net.v4 + net.v6],
            "gateways": [s.gateway for s in net.v4 + net.v6],
            "endpoints": len(net.endpoints),
        }

    def detail(self, net: Network) -> dict:
        d = self.summary(net)
        d["options"] = net.options
        d["leases"] = list(net.leases.values())
        d["endpoints"] = [
            {"id": ep.id, "mac": ep.mac, "ipv4": ep.ipv4, "ipv6": ep.ipv6, "host_if": ep.host_if, "peer_if": ep.peer_if,
             "sandbox": ep.sandbox, "ports": [to_dict(p) for p in ep.ports]}
            for ep in net.endpoints.values()
        ]
        return d

    def find(self, ref: str) -> Network:
        """A network by (a prefix of) its ID or its bridge name."""
        ref = ref.lower()
        matches = [n for n in self.nets.values() if n.id.startswith(ref) or n.bridge == ref]
        if len(matches) != 1:
            raise NotFound(f"no single pynet network matches {ref!r}" if not matches
                           else f"{ref!r} matches {len(matches)} networks; give more of the ID")
        return matches[0]


def _as_mappings(bindings: list[Binding]) -> list[PortMapping]:
    """Applied bindings back to requests (one per host port: a dual-stack `-p` is one mapping)."""
    out: dict[tuple, PortMapping] = {}
    for b in bindings:
        key = (b.proto, b.host_port, b.container_port, b.host_ip if b.host_ip else "")
        out.setdefault(key, PortMapping(proto=b.proto, container_port=b.container_port, host_ip=b.host_ip,
                                        host_port=b.host_port, host_port_end=b.host_port))
    return list(out.values())


def ipam_lease(held: dict):
    from .dhcp import Lease

    return Lease(**held)


def _kernel_port_range() -> tuple[int, int]:
    try:
        return parse_port_range(sysctl.read("/proc/sys/net/ipv4/ip_local_port_range"))
    except (OSError, PynetError):
        return (32768, 60999)
