"""Nothing is lost: kill -9 of pynet, and a dockerd restart."""

from __future__ import annotations

import time

import engine
from conftest import IMAGE, OUT4, OUT4_HOST
from lib import PREFIX, docker, links_with_prefix, sh, wait_for
from test_nat import bounded, wget


def test_kill9_keeps_containers_connected_and_network_usable(nets, ctrs, daemon, outside):
    net = nets.create("k9")
    web = ctrs.start("k9web", "--net", net, IMAGE, "httpd", "-f", "-p", "80")
    client = ctrs.start("k9cli", "--net", net, IMAGE, "sleep", "600")
    before = sorted(links_with_prefix())
    daemon.kill9()
    # The kernel keeps forwarding without the daemon.
    assert "pynet test page" in ctrs.sh(client, bounded(f"wget -qO- http://{web}/")).stdout
    assert ctrs.sh(client, bounded(f"wget -qO- http://{OUT4}:8000/")).stdout.strip() == OUT4_HOST
    daemon.start()
    assert sorted(links_with_prefix()) == before  # reconcile kept every live link
    assert "pynet test page" in ctrs.sh(client, bounded(f"wget -qO- http://{web}/")).stdout
    # New containers still join, and the old ones can leave.
    assert "pynet test page" in wget(ctrs, net, f"http://{web}/").stdout
    docker("rm", "-f", client)
    docker("network", "disconnect", net, web)
    assert sorted(links_with_prefix()) == [n for n in before if not n.startswith(PREFIX + "h")]


def test_kill9_then_firewall_flushed_is_rebuilt(nets, ctrs, daemon, outside):
    net = nets.create("flush")
    daemon.kill9()
    sh("nft", "delete", "table", "inet", daemon.env()["PYNET_TABLE"])
    daemon.start()
    assert wget(ctrs, net, f"http://{OUT4}:8000/").stdout.strip() == OUT4_HOST
    # And while running: a flushed table comes back within the check interval (1 s in tests).
    sh("nft", "delete", "table", "inet", daemon.env()["PYNET_TABLE"])
    wait_for(lambda: sh("nft", "list", "table", "inet", daemon.env()["PYNET_TABLE"], check=False).returncode == 0,
             what="table rebuilt")
    assert wget(ctrs, net, f"http://{OUT4}:8000/").stdout.strip() == OUT4_HOST


def test_dockerd_restart_brings_containers_back_networked(nets, ctrs, daemon, outside):
    net = nets.create("dr")
    web = ctrs.start("drweb", "--restart", "always", "--net", net, IMAGE, "httpd", "-f", "-p", "80")
    engine.restart()

    def running():
        return docker("inspect", "-f", "{{.State.Running}}", web, check=False).stdout.strip() == "true"

    wait_for(running, timeout=60, what="container restarted")
    time.sleep(0.5)
    assert "pynet test page" in wget(ctrs, net, f"http://{web}/").stdout
    assert ctrs.sh(web, bounded(f"wget -qO- http://{OUT4}:8000/")).stdout.strip() == OUT4_HOST


def test_simulated_host_reboot(nets, ctrs, daemon, outside):
    """Kernel objects gone, state kept, dockerd restarted: containers come back networked, ports too."""
    from test_ports import PAGE, fetch

    net = nets.create("boot")
    web = ctrs.start("bootweb", "--restart", "always", "--net", net, "-p", "18160:80",
                     IMAGE, "httpd", "-f", "-p", "80")
    assert PAGE in fetch(f"http://{OUT4_HOST}:18160/", outside.name)
    daemon.kill9()
    engine.stop()  # containers stop; pynet is down, so Docker's DeleteEndpoint calls fail
    try:
        # What a reboot takes away: every pynet link and the nftables table.
        for name in links_with_prefix():
            sh("ip", "link", "del", name, check=False)
        sh("nft", "delete", "table", "inet", daemon.env()["PYNET_TABLE"], check=False)
        assert links_with_prefix() == []
        daemon.start()  # as a boot service would, before dockerd
    finally:
        engine.start()  # even when the above failed: the rest of the run needs the engine
    wait_for(lambda: docker("inspect", "-f", "{{.State.Running}}", web, check=False).stdout.strip() == "true",
             timeout=90, what="container restarted")
    wait_for(lambda: PAGE in (fetch(f"http://{OUT4_HOST}:18160/", outside.name) or ""), timeout=20,
             what="published port after reboot")
    assert "pynet test page" in wget(ctrs, net, f"http://{web}/").stdout
    assert ctrs.sh(web, bounded(f"wget -qO- http://{OUT4}:8000/")).stdout.strip() == OUT4_HOST


def test_live_restore_restart_keeps_containers_and_ports(nets, ctrs, daemon, outside):
    """dockerd --live-restore: a dockerd restart leaves containers running; their networking and
    published port stay, new containers join, and removing one afterwards removes its port and links."""
    from test_ports import PAGE, fetch

    with engine.flags("--live-restore"):
        net = nets.create("lr")
        web = ctrs.start("lrweb", "--net", net, "-p", "18170:80", IMAGE, "httpd", "-f", "-p", "80")
        pid = docker("inspect", "-f", "{{.State.Pid}}", web).stdout.strip()
        links = sorted(links_with_prefix())
        assert PAGE in (fetch(f"http://{OUT4_HOST}:18170/", outside.name) or "")
        engine.restart("--live-restore")
        assert docker("inspect", "-f", "{{.State.Pid}}", web).stdout.strip() == pid, "container was restarted"
        assert PAGE in (fetch(f"http://{OUT4_HOST}:18170/", outside.name) or ""), "port after the restart"
        assert sorted(links_with_prefix()) == links
        assert "pynet test page" in wget(ctrs, net, f"http://{web}/").stdout  # a new container, by name
        assert ctrs.sh(web, bounded(f"wget -qO- http://{OUT4}:8000/")).stdout.strip() == OUT4_HOST
        docker("rm", "-f", web)
        assert fetch(f"http://{OUT4_HOST}:18170/", outside.name, timeout=3) is None, "port left after rm"
        assert [n for n in links_with_prefix() if n.startswith(PREFIX + "h")] == []
