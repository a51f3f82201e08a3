"""`pynet doctor`: what pynet needs from the host, and what to do when it is missing.

Every check is a measurement, not a guess: kernel features are tried (links made in a
throwaway network namespace), Docker's firewall is read, and a warning is printed only
when it is true for the networks that exist, each with what to do about it.
"""

from __future__ import annotations

import json
import subprocess
import sys

from . import client

OK, WARN, FAIL = "ok", "warn", "FAIL"

# Run in a fresh network namespace (unshare --net): each kind of link pynet makes, made once.
_PROBE = r"""
import json, subprocess
def ip(*a):
    return subprocess.run(["ip", *a], capture_output=True, text=True)
out = {}
def try_(name, *cmd):
    p = ip(*cmd)
    out[name] = "" if p.returncode == 0 else (p.stderr.strip() or f"exit {p.returncode}")
try_("bridge", "link", "add", "pdbr0", "type", "bridge")
try_("veth", "link", "add", "pdve0", "type", "veth", "peer", "name", "pdve1")
try_("macvlan", "link", "add", "pdmv0", "link", "pdve0", "type", "macvlan", "mode", "bridge")
try_("8021q", "link", "add", "link", "pdve0", "name", "pdve0.50", "type", "vlan", "id", "50")
try_("vxlan", "link", "add", "pdvx0", "type", "vxlan", "id", "42", "dstport", "4789", "dev", "pdve0")
p = subprocess.run(["nft", "-f", "-"], input="table bridge pdt {\n chain c { type filter hook prerouting priority -300; }\n}\n"
                   "table inet pdi {\n map m { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }\n}\n",
                   capture_output=True, text=True)
out["nftables"] = "" if p.returncode == 0 else (p.stderr.strip() or "nft failed")
# Bandwidth limits: a TBF, an HTB with a u32 filter on the Ethernet source, a netdev policer.
errs = []
ip("link", "set", "pdve0", "up")
for cmd in (["qdisc", "add", "dev", "pdve0", "root", "tbf", "rate", "1mbit", "burst", "16k", "latency", "50ms"],
            ["qdisc", "add", "dev", "pdve1", "root", "handle", "706e:", "htb", "default", "0"],
            ["filter", "add", "dev", "pdve1", "parent", "706e:", "protocol", "all", "prio", "1", "u32", "match",
             "ether", "src", "02:00:00:00:00:01", "flowid", "706e:1"]):
    q = subprocess.run(["tc", *cmd], capture_output=True, text=True)
    if q.returncode != 0:
        errs.append(f"tc {cmd[0]} {cmd[5] if cmd[0] == 'qdisc' else 'u32'}: {q.stderr.strip() or q.returncode}")
p = subprocess.run(["nft", "-f", "-"], input='table netdev pdn {\n chain c { type filter hook ingress device "pdve0" '
                   'priority 0; limit rate over 1000 bytes/second burst 2000 bytes drop; }\n}\n',
                   capture_output=True, text=True)
if p.returncode != 0:
    errs.append(f"nftables netdev limit: {p.stderr.strip() or 'failed'}")
out["limits"] = "; ".join(errs)
print(json.dumps(out))
"""

# feature -> (which networks need it, what to do when it is missing)
FEATURES = {
    "bridge": ("nat", "load the bridge module (modprobe bridge) or use a kernel with CONFIG_BRIDGE"),
    "veth": ("nat, l2bridge", "load the veth module (modprobe veth) or use a kernel with CONFIG_VETH"),
    "macvlan": ("transparent", "load the macvlan module (modprobe macvlan) or use a kernel with CONFIG_MACVLAN"),
    "8021q": ("VLAN parents (-o parent=eth0.50)", "load the 8021q module (modprobe 8021q), or create the VLAN "
                                                  "interface yourself and give it as parent"),
    "vxlan": ("overlay", "load the vxlan module (modprobe vxlan) or use a kernel with CONFIG_VXLAN"),
    "nftables": ("every mode", "install nftables and use a kernel with nf_tables (bridge and inet families)"),
    "limits": ("bandwidth limits (-o/--driver-opt ingress_rate, egress_rate; pynet limit)",
               "load sch_tbf, sch_htb, cls_u32 and nft_limit (with nf_tables' netdev family), or set no limits"),
}


def probe_kernel() -> dict[str, str]:
    """feature -> "" when it works, else the kernel's error. Needs root (unshare --net)."""
    try:
        p = subprocess.run(["unshare", "--net", sys.executable, "-c", _PROBE], capture_output=True, text=True,
                           timeout=30)
        return json.loads(p.stdout) if p.returncode == 0 else {k: p.stderr.strip() or "probe failed" for k in FEATURES}
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        return {k: f"cannot probe: {e}" for k in FEATURES}


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _nft(cmd: str) -> tuple[int, str]:
    try:
        import nftables
    except ImportError:
        return 1, "python3-nftables missing"
    nft = nftables.Nftables()
    rc, out, err = nft.cmd(cmd)
    return rc, out if rc == 0 else err


def docker_firewall() -> str:
    """Which firewall Docker runs here, read from nftables (never from Docker's API):
    iptables (its DOCKER-USER chain), nftables (Docker 29's `ip docker-bridges`), or none."""
    if _nft("list chain ip filter DOCKER-USER")[0] == 0:
        return "iptables"
    if _nft("list table ip docker-bridges")[0] == 0:
        return "nftables"
    return "none"


def _forward_policy_drop() -> bool:
    rc, out = _nft("list chain ip filter FORWARD")
    return rc == 0 and "policy drop" in out


def kernel_checks(needs: set[str]) -> list[tuple[str, str, str]]:
    """`needs`: the link kinds the existing networks' modes make (from the daemon's status)."""
    out = []
    results = probe_kernel()
    for feature, (who, fix) in FEATURES.items():
        err = results.get(feature, "not probed")
        needed = feature == "nftables" or feature in needs
        if not err:
            out.append((OK, f"kernel: {feature}", f"works (needed by {who})"))
        elif needed:
            out.append((FAIL, f"kernel: {feature}", f"cannot be made ({err}); networks of {who} need it: {fix}"))
        else:
            out.append((OK, f"kernel: {feature}", f"not available ({err}); only {who} need it, and no network "
                                                  f"here uses it ({fix})"))
    return out


def firewall_checks(st: dict | None, forwarding: bool) -> list[tuple[str, str, str]]:
    """Docker's firewall against what pynet's networks need (nat/l2bridge traffic is forwarded)."""
    out = []
    backend = docker_firewall()
    if not forwarding:
        out.append((OK, "Docker firewall", f"{backend}; no nat or l2bridge network, so pynet forwards nothing"))
        return out
    prefix = st["link_prefix"] if st else "pn-"
    if backend == "iptables":
        rc, chain = _nft("list chain ip filter DOCKER-USER")
        if f'"{prefix}*"' in chain:
            out.append((OK, "Docker firewall", "iptables: DOCKER-USER accepts pynet's interfaces"))
        else:
            out.append((FAIL, "Docker firewall", f"DOCKER-USER lacks pynet's accepts for {prefix}*: forwarded "
                                                 "traffic dies in Docker's FORWARD DROP; pynet re-adds them every "
                                                 "few seconds: if this stays, restart pynet and see its log"))
    elif backend == "nftables":
        out.append((OK, "Docker firewall", "nftables (Docker 29): Docker's chains drop nothing of pynet's"))
    elif _forward_policy_drop():
        out.append((FAIL, "Docker firewall", "ip filter FORWARD has policy drop but there is no DOCKER-USER "
                                             "chain (Docker with --iptables=false, or another firewall): let "
                                             f"pynet's traffic through, e.g. `iptables -I FORWARD -i {prefix}+ -j "
                                             f"ACCEPT` and `iptables -I FORWARD -o {prefix}+ -j ACCEPT`"))
    else:
        out.append((OK, "Docker firewall", "none (Docker with --iptables=false, or no Docker): nothing blocks "
                                           "forwarding"))
    fwd = _read("/proc/sys/net/ipv4/ip_forward")
    out.append((OK if fwd == "1" else FAIL, "sysctl net.ipv4.ip_forward",
                "1" if fwd == "1" else "is 0 although nat/l2bridge networks exist (something reset it): "
                                       "sysctl -w net.ipv4.ip_forward=1, or restart pynet"))
    return out


def checks(sock: str | None) -> list[tuple[str, str, str]]:
    out = []
    st = nets = None
    try:
        path = client.find_socket(sock)
        st = client.call(path, "GET", "/pynet/v1/status", timeout=10)
        nets = client.call(path, "GET", "/pynet/v1/networks", timeout=10)
    except SystemExit as e:
        out.append((FAIL, "daemon", str(e)))
    out += kernel_checks({need for n in nets or [] for need in n.get("kernel_needs", [])})
    out += firewall_checks(st, any(n.get("forwards") for n in nets or []))
    brnf = _read("/proc/sys/net/bridge/bridge-nf-call-iptables")
    out.append((OK, "br_netfilter", "bridged frames pass inet hooks (pynet accepts intra-network traffic)"
                if brnf == "1" else "not active"))
    if st is None:
        return out
    out.append((OK, "daemon", f"{st['driver']} on {st['socket']}: {st['networks']} networks, "
                              f"{st['endpoints']} endpoints"))
    if st["table_present"] is False:
        out.append((FAIL, "nftables table", f"inet {st['table']} is missing; pynet rebuilds it within seconds: "
                                            "if this stays, see pynet's log"))
    for problem in st["state_problems"]:
        out.append((FAIL, "state", problem + " (README: A damaged state record; `pynet state export` shows "
                                             "what is kept)"))
    if st.get("state_moved"):
        out.append((FAIL, "state", st["state_moved"]))
    for problem in st.get("drift", []):
        out.append((FAIL, "state/kernel drift", problem + "; `pynet reconcile` (or a restart of pynet) rebuilds "
                                                          "it from state"))
    if not st.get("drift"):
        out.append((OK, "state/kernel drift", "none: every interface in the state exists"))
    for r in client.live_refusals(st, client.docker_network_names()):
        out.append((FAIL, "swarm allocation", f"AllocateNetwork refused swarm network {r['network']} "
                                              f"(attempts: {r['count']}): {r['error']}. Docker showed this to nobody: "
                                              "the network exists but its tasks stay New; `docker network rm` it "
                                              "and create it again with what the error asks for"))
    if st["leftovers_now"]:
        out.append((WARN, "leftovers", "links owned by no network: " + ", ".join(st["leftovers_now"])
                    + (" (kept while a state file is damaged)" if st["state_problems"] else
                       " (`pynet reconcile` removes them, or the next start)")))
    else:
        out.append((OK, "leftovers", "none"))
    return out


def run(sock: str | None) -> int:
    results = checks(sock)
    for level, what, detail in results:
        print(f"[{level:4}] {what}: {detail}".rstrip(": "))
    return 1 if any(level == FAIL for level, _w, _d in results) else 0
