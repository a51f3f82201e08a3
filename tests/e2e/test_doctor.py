"""`pynet doctor` against a live daemon: clean, drift (state says, kernel lacks), leftovers."""

from __future__ import annotations

from conftest import IMAGE
from lib import PREFIX, PYNET, links_with_prefix, sh
from test_transparent import lan, lan_net  # noqa: F401 - the namespace LAN fixture


def doctor(daemon):
    return sh(PYNET, "--socket", daemon.socket, "doctor", check=False)


def test_doctor_sees_drift_and_leftovers(nets, ctrs, daemon):
    net = nets.create("doc")
    ctrs.start("docweb", "--net", net, IMAGE, "httpd", "-f", "-p", "80")
    p = doctor(daemon)
    assert p.returncode == 0 and "[ok  ] state/kernel drift" in p.stdout, p.stdout
    bridge = next(n for n in links_with_prefix() if n.startswith(PREFIX + "n"))
    sh("ip", "link", "del", bridge)  # lost behind pynet's back
    p = doctor(daemon)
    assert p.returncode == 1 and f"interface {bridge} missing" in p.stdout and "reconcile" in p.stdout, p.stdout
    status, _ = daemon.call("/pynet/v1/reconcile")
    assert status == 200
    assert doctor(daemon).returncode == 0
    stray = PREFIX + "n" + "0" * (15 - len(PREFIX) - 1)  # pynet's name shape, owned by nothing
    sh("ip", "link", "add", stray, "type", "bridge")
    try:
        p = doctor(daemon)
        assert "[warn] leftovers" in p.stdout and stray in p.stdout, p.stdout
    finally:
        sh("ip", "link", "del", stray, check=False)


def _lines(p, level: str) -> list[str]:
    return [line for line in p.stdout.splitlines() if line.startswith(f"[{level}")]


def test_doctor_does_not_cry_wolf(nets, ctrs, daemon, lan):
    """It warned "macvlan not loaded" where macvlan is built in and works, warned about ipvlan
    (which pynet never uses) and failed on DOCKER-USER for transparent-only networks."""
    net = lan_net(nets, lan, "docl")
    ctrs.start("docl", "--net", net, "--ip", "10.77.0.140", IMAGE, "sleep", "600")
    p = doctor(daemon)
    assert p.returncode == 0, p.stdout
    assert not _lines(p, "warn") and not _lines(p, "FAIL"), p.stdout
    assert "ipvlan" not in p.stdout
    assert "[ok  ] kernel: macvlan: works" in p.stdout
    # With a nat network the forwarding path is checked, and found in order.
    nets.create("docn")
    p = doctor(daemon)
    assert p.returncode == 0 and "DOCKER-USER accepts pynet's interfaces" in p.stdout, p.stdout
    assert "[ok  ] sysctl net.ipv4.ip_forward" in p.stdout
