"""`pynet` command line: serve, ls, inspect, doctor."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from . import client, config
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
    nets = client.call(client.find_socket(args.socket), "GET", "/pynet/v1/networks")
    if args.json:
        print(json.dumps(nets, indent=2))
        return 0
    names = client.docker_network_names()
    rows = [("NETWORK ID", "NAME", "MODE", "BRIDGE", "SUBNETS", "ENDPOINTS")]
    for n in nets:
        rows.append((n["id"][:12], _name_or_id(names, n["id"]), n["mode"], n["bridge"],
                     ",".join(n["subnets"]), str(n["endpoints"])))
    _table(rows)
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


def _doctor(args) -> int:
    from . import doctor

    return doctor.run(args.socket)


def _table(rows) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="pynet", description="Docker network driver: nat mode (more to come)")
    p.add_argument("--socket", help="daemon socket (default: $PYNET_SOCKET, the legacy or managed plugin socket)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the driver daemon in the foreground")
    s.add_argument("--config", help="YAML config file")
    s.set_defaults(fn=_serve)
    s = sub.add_parser("ls", help="list pynet networks")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=_ls)
    s = sub.add_parser("inspect", help="show one network with its endpoints")
    s.add_argument("network", help="Docker network name, or (a prefix of) its ID")
    s.set_defaults(fn=_inspect)
    s = sub.add_parser("doctor", help="check the kernel, Docker's firewall and leftovers")
    s.set_defaults(fn=_doctor)
    args = p.parse_args(argv)
    return args.fn(args)
