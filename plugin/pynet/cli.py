"""`pynet` command line: serve, ls, inspect, ports, port, limit, leases, stats, reconcile, state, doctor."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from . import client, config, state_cli
from .errors import PynetError


def _serve(args) -> int:
    from . import app, logs

    try:
        cfg = config.load(args.config)
    except PynetError as e:
        print(f"pynet: {e}", file=sys.stderr)
        return 2
    if args.socket:
        cfg = config.Config(**{**cfg.__dict__, "socket": args.socket})
    logs.setup(cfg.log_level)
    try:
        asyncio.run(app.serve(cfg))
    except PynetError as e:
        print(f"pynet: {e}", file=sys.stderr)
        return 1
    return 0


def _name_or_id(names: dict[str, str], net_id: str) -> str:
    return names.get(net_id, "-")


def _ls(args) -> int:
    sock = client.find_socket(args.socket)
    nets = client.call(sock, "GET", "/pynet/v1/networks")
    status = client.call(sock, "GET", "/pynet/v1/status")
    if args.json:
        print(json.dumps(nets, indent=2))
        return 0
    names = client.docker_network_names()
    rows = [("NETWORK ID", "NAME", "MODE", "INTERFACE", "SUBNETS", "ENDPOINTS")]
    for n in nets:
        iface = n["bridge"] or n["parent"]
        if n.get("vxlan"):
            iface += f" (vxlan {n['vxlan']} VNI {n['vni']} on {n['parent']})"
        rows.append((n["id"][:12], _name_or_id(names, n["id"]), n["mode"], iface, ",".join(n["subnets"]),
                     str(n["endpoints"])))
    _table(rows)
    for problem in status.get("state_problems", []):
        print(f"DAMAGED: {problem} (see `pynet doctor`)", file=sys.stderr)
    if status.get("state_moved"):
        print(f"STATE MOVED: {status['state_moved']}", file=sys.stderr)
    for r in client.live_refusals(status, names):
        print(f"REFUSED: swarm network {_name_or_id(names, r['network'])} ({r['network']}): {r['error']} -- "
              f"AllocateNetwork refused it (attempts: {r['count']}), so it never starts: `docker network rm` it and "
              f"create it again", file=sys.stderr)
    return 0


def _resolve(ref: str) -> str:
    """A Docker network name -> its ID, so `pynet inspect mynet` works."""
    for net_id, name in client.docker_network_names().items():
        if name == ref:
            return net_id
    return ref


def _inspect(args) -> int:
    doc = client.call(client.find_socket(args.socket), "GET", f"/pynet/v1/networks/{_resolve(args.network)}")
    doc["name"] = client.docker_network_names().get(doc["id"], "")
    print(json.dumps(doc, indent=2))
    return 0


def _container_endpoint(sock: str, container: str, net_ref: str | None) -> tuple[str, str]:
    """(network ID, endpoint ID) of a container on one of this daemon's networks, asked of Docker."""
    doc = client.docker_get(f"/containers/{container}/json")
    if doc is None:
        raise SystemExit(f"pynet: Docker knows no container {container!r} (or Docker is not reachable)")
    ours = {n["id"] for n in client.call(sock, "GET", "/pynet/v1/networks")}
    found = []
    for name, info in (doc.get("NetworkSettings", {}).get("Networks") or {}).items():
        if info.get("NetworkID") in ours and (not net_ref or net_ref in (name, info["NetworkID"])
                                              or info["NetworkID"].startswith(net_ref)):
            found.append((info["NetworkID"], info["EndpointID"], name))
    if not found:
        raise SystemExit(f"pynet: container {container} is not on a pynet network"
                         + (f" matching {net_ref!r}" if net_ref else ""))
    if len(found) > 1:
        raise SystemExit(f"pynet: container {container} is on several pynet networks "
                         f"({', '.join(f[2] for f in found)}); choose one with --net")
    return found[0][0], found[0][1]


def _fmt_binding(b: dict) -> tuple[str, str]:
    from .ports import fmt_host

    cip = f"[{b['container_ip']}]" if b["family"] == 6 else b["container_ip"]
    return fmt_host(b["family"], b["host_ip"], b["host_port"]), f"{cip}:{b['container_port']}/{b['proto']}"


def _ports(args) -> int:
    sock = client.find_socket(args.socket)
    query = ""
    if args.target:
        nets = client.call(sock, "GET", "/pynet/v1/networks")
        net_id = _resolve(args.target)
        match = [n["id"] for n in nets if n["id"].startswith(net_id.lower())]
        if len(match) == 1:
            query = f"?network={match[0]}"
        else:
            net_id, ep_id = _container_endpoint(sock, args.target, None)
            query = f"?network={net_id}&endpoint={ep_id}"
    bindings = client.call(sock, "GET", "/pynet/v1/ports" + query)
    if args.json:
        print(json.dumps(bindings, indent=2))
        return 0
    names = client.docker_network_names()
    containers = client.docker_endpoint_names({b["network"] for b in bindings})
    rows = [("HOST", "", "CONTAINER", "NETWORK", "CONTAINER NAME", "SOURCE")]
    for b in sorted(bindings, key=lambda b: (b["host_port"], b["proto"], b["family"])):
        host, target = _fmt_binding(b)
        rows.append((host, "->", target, names.get(b["network"], b["network"][:12]),
                     containers.get(b["endpoint"], b["endpoint"][:12]), b["source"]))
    _table(rows)
    return 0


def _port_change(args) -> int:
    sock = client.find_socket(args.socket)
    net_id, ep_id = _container_endpoint(sock, args.container, args.net)
    path = "/pynet/v1/ports/add" if args.cmd_port == "add" else "/pynet/v1/ports/rm"
    changed = client.call(sock, "POST", path, {"NetworkID": net_id, "EndpointID": ep_id, "ports": args.spec})
    verb = "published" if args.cmd_port == "add" else "closed"
    for b in changed:
        host, target = _fmt_binding(b)
        print(f"{verb} {host} -> {target}")
    return 0


def _limit(args) -> int:
    """`pynet limit`: all limited endpoints; `pynet limit CONTAINER`: its limits; with KEY=VALUE: change them."""
    sock = client.find_socket(args.socket)
    settings = {}
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise SystemExit(f"pynet: {item!r} is not KEY=VALUE (e.g. ingress_rate=10mbit, egress_burst=64kb, "
                             f"egress_rate=none, ingress_rate=default)")
        settings[key.strip()] = value.strip()
    if args.container:
        net_id, ep_id = _container_endpoint(sock, args.container, args.net)
        if settings:
            docs = [client.call(sock, "POST", "/pynet/v1/limits",
                                {"NetworkID": net_id, "EndpointID": ep_id, "limits": settings})]
        else:
            docs = client.call(sock, "GET", f"/pynet/v1/limits?network={net_id}&endpoint={ep_id}")
    else:
        if settings:
            raise SystemExit("pynet: name the container whose limits to change: pynet limit CONTAINER KEY=VALUE ...")
        docs = [d for d in client.call(sock, "GET", "/pynet/v1/limits") if d["limits"]]
    if args.json:
        print(json.dumps(docs, indent=2))
        return 0
    names = client.docker_network_names()
    containers = client.docker_endpoint_names({d["network"] for d in docs})
    rows = [("CONTAINER", "NETWORK", "MODE", "INGRESS (IN)", "EGRESS (OUT)", "OWN SETTINGS")]
    for d in docs:
        lim = d["limits"]
        rows.append((containers.get(d["endpoint"], d["endpoint"][:12]), names.get(d["network"], d["network"][:12]),
                     d["mode"], _direction(lim, "ingress"), _direction(lim, "egress"),
                     " ".join(f"{k}={v}" for k, v in d["overrides"].items()) or "-"))
    _table(rows)
    return 0


def _direction(lim: dict, name: str) -> str:
    rate = lim.get(f"{name}_rate")
    return f"{rate} (burst {lim[f'{name}_burst']})" if rate else "none"


def _reconcile(args) -> int:
    """Make the kernel agree with the state now (what a start does), and print what it did."""
    report = client.call(client.find_socket(args.socket), "POST", "/pynet/v1/reconcile", {}, timeout=120)
    for key, items in report.items():
        print(f"{key.replace('_', ' ')}: {', '.join(items) if items else 'none'}")
    return 1 if report.get("errors") else 0


def _state(args) -> int:
    return state_cli.run(args, _resolve)


def _doctor(args) -> int:
    from . import doctor

    return doctor.run(args.socket)


def _stats(args) -> int:
    from . import stats_cli

    if not args.interval > 0:
        raise SystemExit("pynet: --interval must be a positive number of seconds")
    return stats_cli.run(args)


def _table(rows) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _leases(args) -> int:
    leases = client.call(client.find_socket(args.socket), "GET", "/pynet/v1/leases")
    if args.json:
        print(json.dumps(leases, indent=2))
        return 0
    rows = [("MAC", "ADDRESS", "STATE", "SERVER", "HOSTNAME", "LEASE S", "RENEWALS", "NETWORK")]
    names = client.docker_network_names()
    for lease in leases:
        state = lease.get("state", "bound")
        if state == "lost":  # expired or refused: the address was taken from the container
            state = f"lost ({lease.get('lost_why', '')})"
        server = lease.get("server") or lease.get("server_ip", "")
        rows.append((lease["mac"], f"{lease['ip']}/{lease['prefixlen']}", state, server,
                     lease.get("hostname", "") or "-", str(lease.get("lease_time", lease.get("valid", ""))),
                     str(lease.get("renewals", 0)), _name_or_id(names, lease.get("network", ""))))
    _table(rows)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="pynet",
                                description="pynet: Docker network driver (nat, transparent, l2bridge, overlay)")
    p.add_argument("--socket", help="daemon socket (default: $PYNET_SOCKET, the legacy or managed plugin socket)")
    p.add_argument("--plugin", help="the managed plugin to talk to, by name (e.g. pynet-overlay, the global-scope "
                                    "alias); default: the only one, or pynet")
    sub = p.add_subparsers(dest="cmd", required=True)
    # name: (help, handler, arguments as (flags, add_argument keywords))
    json_flag = (("--json",), {"action": "store_true"})
    commands = {
        "serve": ("run the driver daemon in the foreground", _serve, [(("--config",), {"help": "YAML config file"})]),
        "ls": ("list pynet networks", _ls, [json_flag]),
        "inspect": ("show one network with its endpoints", _inspect,
                    [(("network",), {"help": "Docker network name, or (a prefix of) its ID"})]),
        "ports": ("list published ports (all, or of one container or network)", _ports,
                  [(("target",), {"nargs": "?", "help": "container or network (name or ID)"}), json_flag]),
        "leases": ("DHCP leases held for containers (--ipam-driver pynet)", _leases, [json_flag]),
        "stats": ("live traffic per container and published port (rates between two scrapes of /metrics)",
                  _stats, [(("target",), {"nargs": "?", "help": "network or container (name or ID); default all"}),
                           (("--no-stream",), {"action": "store_true", "help": "print one view and exit"}),
                           (("--format",), {"choices": ("table", "json"), "default": "table"}),
                           (("--interval",), {"type": float, "default": 1.0,
                                              "help": "seconds between the two scrapes of a rate (default 1)"})]),
        "reconcile": ("rebuild what the state has and the kernel lacks; remove leftovers", _reconcile, []),
        "doctor": ("check the kernel, Docker's firewall and leftovers", _doctor, []),
    }
    for name, (text, fn, arguments) in commands.items():
        s = sub.add_parser(name, help=text)
        for flags, kw in arguments:
            s.add_argument(*flags, **kw)
        s.set_defaults(fn=fn)
    s = sub.add_parser("limit", help="bandwidth limits of a running container (all limited ones without one)",
                       description="KEY=VALUE: ingress_rate / egress_rate (10mbit, 1gbit, 500kbit, none), "
                       "ingress_burst / egress_burst (64kb, 1mb); VALUE `default` goes back to the network's "
                       "-o setting. Ingress is into the container. Kept across pynet and dockerd restarts while "
                       "the container's endpoint lives.")
    s.add_argument("container", nargs="?")
    s.add_argument("settings", nargs="*", metavar="KEY=VALUE")
    s.add_argument("--net", help="which pynet network, when the container is on several")
    s.add_argument(*json_flag[0], **json_flag[1])
    s.set_defaults(fn=_limit)
    state_cli.add_parser(sub, _state)
    s = sub.add_parser("port", help="open or close ports on a running container")
    psub = s.add_subparsers(dest="cmd_port", required=True)
    for verb, text in (("add", "publish ports, like docker run -p"), ("rm", "close published ports")):
        ps = psub.add_parser(verb, help=text)
        ps.add_argument("container")
        ps.add_argument("spec", nargs="+", help="[IP:][HOSTPORT:]PORT[/tcp|udp|sctp]")
        ps.add_argument("--net", help="which pynet network, when the container is on several")
        ps.set_defaults(fn=_port_change)
    args = p.parse_args(argv)
    if args.plugin and not args.socket and args.cmd != "serve":
        args.socket = client.plugin_socket(args.plugin)
    return args.fn(args)
