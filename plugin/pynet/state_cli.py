"""`pynet state export|restore|forget`: what an operator does about a damaged network (README: "A damaged
state record"), through the daemon, which holds the database."""

from __future__ import annotations

import json

from . import client


def run(args, resolve) -> int:
    """README "A damaged state record": export a network's state, restore it (repaired), or forget it."""
    sock = client.find_socket(args.socket)
    if args.cmd_state == "export":
        print(json.dumps(client.call(sock, "GET", f"/pynet/v1/state/{resolve(args.network)}"), indent=1))
        return 0
    if args.cmd_state == "restore":
        try:
            with open(args.file, "rb") as fh:
                doc = json.loads(fh.read())
        except (OSError, ValueError) as e:
            raise SystemExit(f"pynet: cannot read {args.file}: {e}") from None
        got = client.call(sock, "POST", "/pynet/v1/state/restore", doc, timeout=120)
        print(f"network {got['network'][:12]} restored")
        for key, items in got["reconcile"].items():
            print(f"{key.replace('_', ' ')}: {', '.join(items) if items else 'none'}")
        return 1 if got["reconcile"].get("errors") else 0
    got = client.call(sock, "POST", "/pynet/v1/state/forget", {"network": args.network})
    print(f"network {got['network'][:12]}: {got['records']} damaged record(s) dropped; run `pynet reconcile` "
          f"to remove its interfaces and firewall elements")
    return 0


def add_parser(sub, fn) -> None:
    s = sub.add_parser("state", help="a network's state: export it, restore it, forget a damaged one")
    ssub = s.add_subparsers(dest="cmd_state", required=True)
    for verb, text, arg in (("export", "print a network's state (a damaged one's records) as JSON", "network"),
                            ("restore", "load a network's state from a file written by export (repaired)", "file"),
                            ("forget", "drop a damaged network's records (its links become leftovers)", "network")):
        ss = ssub.add_parser(verb, help=text)
        ss.add_argument(arg)
        ss.set_defaults(fn=fn)
