"""`pynet doctor`: what pynet needs from the host, and what to do when it is missing."""

from __future__ import annotations

import os

from . import client

OK, WARN, FAIL = "ok", "warn", "FAIL"


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def checks(sock: str | None) -> list[tuple[str, str, str]]:
    out = []
    for kind in ("bridge", "veth", "macvlan", "8021q", "ipvlan"):
        present = os.path.isdir(f"/sys/module/{kind}") or kind in ("bridge", "veth")
        needed = kind in ("bridge", "veth")
        out.append((OK if present else (FAIL if needed else WARN), f"kernel: {kind}",
                    "" if present else f"module {kind} not loaded; needed for "
                    + ("every mode" if needed else "LAN modes / VLAN parents")))
    fwd = _read("/proc/sys/net/ipv4/ip_forward")
    out.append((OK if fwd == "1" else WARN, "sysctl net.ipv4.ip_forward",
                "" if fwd == "1" else "is 0; pynet sets it to 1 when it creates a nat network"))
    brnf = _read("/proc/sys/net/bridge/bridge-nf-call-iptables")
    out.append((OK, "br_netfilter", "bridged frames pass inet hooks (pynet accepts intra-network traffic)"
                if brnf == "1" else "not active"))
    try:
        import nftables

        nft = nftables.Nftables()
        rc, listing, err = nft.cmd("list tables")
        out.append((OK if rc == 0 else FAIL, "nftables", err.strip() if rc else "usable"))
        rc, chain, _ = nft.cmd("list chain ip filter DOCKER-USER")
        if rc != 0:
            out.append((WARN, "Docker firewall", "no ip filter DOCKER-USER chain: Docker not running, or runs "
                                                 "with iptables=false (then pynet needs nothing there)"))
    except ImportError:
        out.append((FAIL, "nftables", "python3-nftables missing: apt-get install python3-nftables"))
        chain = ""
    try:
        path = client.find_socket(sock)
        st = client.call(path, "GET", "/pynet/v1/status", timeout=10)
    except SystemExit as e:
        out.append((FAIL, "daemon", str(e)))
        return out
    out.append((OK, "daemon", f"{st['driver']} on {st['socket']}: {st['networks']} networks, "
                              f"{st['endpoints']} endpoints"))
    if st["networks"] and chain is not None and f'"{st["link_prefix"]}*"' not in (chain or ""):
        out.append((FAIL, "Docker firewall", f"DOCKER-USER lacks pynet's accepts for {st['link_prefix']}*: "
                                             "forwarded traffic dies in Docker's FORWARD DROP; restart pynet"))
    elif st["networks"]:
        out.append((OK, "Docker firewall", "DOCKER-USER accepts pynet's interfaces"))
    if st["table_present"] is False:
        out.append((FAIL, "nftables table", f"inet {st['table']} is missing; pynet rebuilds it within seconds"))
    for problem in st["state_problems"]:
        out.append((FAIL, "state", problem + "; inspect it, then remove it or restore a backup"))
    for problem in st.get("drift", []):
        out.append((FAIL, "state/kernel drift", problem + "; POST /pynet/v1/reconcile on the socket or restart "
                                                          "pynet to rebuild it from state"))
    if not st.get("drift"):
        out.append((OK, "state/kernel drift", "none: every interface in the state exists"))
    if st["leftovers_now"]:
        out.append((WARN, "leftovers", "links owned by no network: " + ", ".join(st["leftovers_now"])
                    + " (removed at next start, or POST /pynet/v1/reconcile)"))
    else:
        out.append((OK, "leftovers", "none"))
    return out


def run(sock: str | None) -> int:
    results = checks(sock)
    for level, what, detail in results:
        print(f"[{level:4}] {what}: {detail}".rstrip(": "))
    return 1 if any(level == FAIL for level, _w, _d in results) else 0
