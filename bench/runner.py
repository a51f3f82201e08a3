"""One run of the benchmark: its parameters, the daemon under test, the helpers the sections share,
set-up and clean-up, each section run with retries when someone else restarts dockerd, and the
results (results.json, then report.md through bench/report/)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import time
import traceback
from pathlib import Path

import report
from common import (BR_NET, BR_SUBNET, DRIVER, IMAGE, LABEL, NAME, NAT_NET, NAT_SUBNET, PREFIX, ROOT, SOCK,
                    STATE_DIR, TABLE, BenchError, DockerDown, docker, dockerd_pid, log, proc_field, proc_kb,
                    register_session, sh, sleeper, unregister_session, wait_docker)
from daemon import Pynetd
from measure import SECTIONS, Section, proxy_off
from params import PARAMS


class Bench:
    def __init__(self, quick: bool, out: Path):
        self.quick = quick
        self.out = out
        self.d = Pynetd()
        self.children: list[subprocess.Popen] = []
        self.only: set[str] = set()
        self.res: dict = {"sections": {}, "notes": [], "errors": {}, "rss_timeline": []}
        self.durations: dict[str, float] = {}
        self.host_ip = ""
        self.proxy_off = False  # --proxy-off: section ports_proxy_off (restarts dockerd)
        self.dockerd_orig: dict | None = None  # set while dockerd runs with --userland-proxy=false
        self.engine_sock = ""  # --engine-sock: section 7's engine, already with the flag (nothing restarted)
        self.p = {k: q if quick else full for k, (q, full) in PARAMS.items()}
        # Set once preflight found no other bench on the bench's names: only then is the clean-up ours to do
        # (a run refused because another `make bench` is running must not remove that run's daemon and objects).
        self.owns_names = False

    # ------------------------------------------------------------ helpers for the sections
    def spawn(self, cmd: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.children.append(p)
        return p

    def kill_child(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for f in (p.stdout, p.stderr):
            if f:
                f.close()
        if p in self.children:
            self.children.remove(p)

    def kill_children(self) -> None:
        for p in list(self.children):
            self.kill_child(p)

    def rss_mark(self, what: str) -> None:
        if self.d.alive():
            self.res["rss_timeline"].append((what, self.d.rss()))

    def container(self, name: str, net: str, *args: str) -> str:
        full = f"{NAME}-{name}"
        docker("rm", "-f", full, check=False)
        docker(*sleeper(full, net, *args))
        return full

    def cpid(self, name: str) -> str:
        pid = docker("inspect", "-f", "{{.State.Pid}}", name).stdout.strip()
        if not pid or pid == "0":
            raise BenchError(f"container {name} is not running")
        return pid

    def cip(self, name: str, net: str) -> str:
        return docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}',
                      name).stdout.strip()

    def ensure_networks(self) -> None:
        have = set(docker("network", "ls", "--format", "{{.Name}}").stdout.split())
        if NAT_NET not in have:
            docker("network", "create", "-d", DRIVER, "--label", LABEL, "--subnet", NAT_SUBNET, NAT_NET)
        if BR_NET not in have:
            docker("network", "create", "-d", "bridge", "--label", LABEL, "--subnet", BR_SUBNET, BR_NET)

    def section_cleanup(self) -> None:
        self.kill_children()
        ids = docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
        if ids:
            docker("rm", "-f", *ids, check=False, timeout=900)

    def dockerd_restore(self) -> None:
        proxy_off.restore(self)

    # ------------------------------------------------------------ set-up / tear-down
    def preflight(self) -> None:
        if os.geteuid() != 0:
            raise SystemExit("bench: must run as root (it drives dockerd, netns and nftables)")
        if Pynetd.someone_answers():
            raise SystemExit(f"bench: a daemon already answers on {SOCK}: is another `make bench` running?")
        wait_docker(60)
        if docker("image", "inspect", IMAGE, check=False).returncode != 0:
            raise SystemExit(f"bench: image {IMAGE} is missing: run scripts/images.sh (make bench does)")
        for tool in ("iperf3", "wrk", "taskset", "nsenter", "ss"):
            if not shutil.which(tool):
                raise SystemExit(f"bench: {tool} not found (scripts/bench-deps.sh installs iperf3 and wrk)")
        route = sh("ip", "-4", "route", "get", "1.1.1.1", check=False).stdout.split()
        self.host_ip = route[route.index("src") + 1] if "src" in route else ""
        if not self.host_ip:
            for line in sh("ip", "-4", "-o", "addr", "show", "scope", "global").stdout.splitlines():
                self.host_ip = line.split()[3].split("/")[0]
                break
        if not self.host_ip:
            raise SystemExit("bench: the host has no global IPv4 address to publish ports on")

    def cleanup(self, final: bool = True) -> list[str]:
        """Remove everything the bench makes; never raises. Returns what was found."""
        found: list[str] = []
        self.kill_children()
        self._cleanup_docker(found)
        self._cleanup_daemon_networks(found)
        self.d.stop()
        for s in SECTIONS:
            if s.cleanup:
                found += s.cleanup()
        self._cleanup_kernel(found)
        if final or found:
            shutil.rmtree(STATE_DIR, ignore_errors=True)
            if final:
                self._keep_daemon_log()
        try:
            os.unlink(SOCK)
        except FileNotFoundError:
            pass
        if final:
            unregister_session()
        return found

    def _cleanup_docker(self, found: list[str]) -> None:
        try:
            ids = docker("ps", "-aq", "--filter", f"label={LABEL}", check=False, timeout=120).stdout.split()
            if ids:
                found.append(f"{len(ids)} containers")
                docker("rm", "-f", *ids, check=False, timeout=900)
            nets = docker("network", "ls", "-q", "--filter", f"label={LABEL}", check=False).stdout.split()
            nets += docker("network", "ls", "-q", "--filter", f"driver={DRIVER}", check=False).stdout.split()
            nets = sorted(set(nets))
            if nets and not self.d.alive() and os.path.isdir(STATE_DIR):
                self.d.start()  # Docker asks the driver to delete its networks
            for n in nets:
                found.append(f"network {n[:12]}")
                docker("network", "rm", n, check=False, timeout=120)
        except Exception as e:  # noqa: BLE001 - cleanup goes on
            log(f"cleanup (docker): {e}")

    def _cleanup_daemon_networks(self, found: list[str]) -> None:
        """Networks the daemon still has (made by protocol calls, or Docker's are gone): deleted through it."""
        try:
            if not self.d.alive() and os.path.exists(os.path.join(STATE_DIR, "state.db")):  # plugin/pynet/store/
                self.d.start()
            if self.d.alive():
                for n in self.d.ok("/pynet/v1/networks", method="GET"):
                    found.append(f"pynet network {n['id'][:12]}")
                    self.d.call("/NetworkDriver.DeleteNetwork", {"NetworkID": n["id"]})
        except Exception as e:  # noqa: BLE001
            log(f"cleanup (daemon networks): {e}")

    @staticmethod
    def _cleanup_kernel(found: list[str]) -> None:
        """Namespaces, links, nft tables and DOCKER-USER rules under the bench's names."""
        for ns in sh("ip", "netns", "list", check=False).stdout.split("\n"):
            name = ns.split(" ")[0]
            if name.startswith(f"{NAME}-"):
                found.append(f"netns {name}")
                sh("ip", "netns", "del", name, check=False)
        for line in sh("ip", "-o", "link", "show", check=False).stdout.splitlines():
            name = line.split(":", 2)[1].strip().split("@")[0]
            if name.startswith(PREFIX):
                found.append(f"link {name}")
                sh("ip", "link", "del", name, check=False)
        for family in ("inet", "bridge", "ip", "ip6"):
            if sh("nft", "list", "table", family, TABLE, check=False).returncode == 0:
                found.append(f"nft table {family} {TABLE}")
                sh("nft", "delete", "table", family, TABLE, check=False)
        for family in ("ip", "ip6"):
            listing = sh("nft", "-a", "list", "chain", family, "filter", "DOCKER-USER", check=False).stdout
            for line in listing.splitlines():
                if f'"{PREFIX}*"' in line and "# handle" in line:
                    found.append(f"DOCKER-USER rule {line.strip()}")
                    handle = line.rsplit("# handle", 1)[1].strip()
                    sh("nft", "delete", "rule", family, "filter", "DOCKER-USER", "handle", handle, check=False)

    def _keep_daemon_log(self) -> None:
        try:
            if self.res["errors"]:  # kept for the post-mortem (bench/.gitignore)
                shutil.move(str(self.d.log_path), str(self.out / "daemon.log"))
            else:
                self.d.log_path.unlink()
        except (FileNotFoundError, OSError):
            pass

    # ------------------------------------------------------------ the sections
    def section(self, s: Section) -> None:
        """Run one section. Someone else restarting dockerd voids it: it runs again (3 attempts in all).

        A run that finished while dockerd was restarted at some point is kept as a fallback,
        in case every new attempt is disturbed too.
        """
        key = s.key
        if self.only and key not in self.only:
            return
        t0 = time.monotonic()
        fallback = None
        attempts = 1 if s.restarts_dockerd else 3
        for attempt in range(1, attempts + 1):
            pid = dockerd_pid()
            again = attempt < attempts
            try:
                log(f"section {key}" + (f" (attempt {attempt}: dockerd was restarted meanwhile)" if attempt > 1
                                        else ""))
                result = s.measure(self)
                if s.uses_dockerd and dockerd_pid() != pid and again:
                    fallback = result
                    self.res["notes"].append(f"{key}: dockerd was restarted (not by the bench) during attempt "
                                             f"{attempt}; measured again")
                    wait_docker()
                    continue
                self.res["sections"][key] = result
                self.res["errors"].pop(key, None)
                break
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - report it and go on with the next section
                if self._failed(s, e, pid, attempt, again, fallback):
                    continue
                break
            finally:
                self.section_cleanup()
        self.durations[key] = time.monotonic() - t0
        self.write_report()

    def _failed(self, s: Section, e: Exception, pid: str, attempt: int, again: bool, fallback) -> bool:
        """A section's attempt raised e: True to try again (dockerd was restarted by someone else)."""
        key = s.key
        log(f"section {key} failed: {e}")
        traceback.print_exc()
        restarted = not s.restarts_dockerd and (isinstance(e, DockerDown) or dockerd_pid() != pid)
        if restarted:
            wait_docker()
            if again:
                self.res["notes"].append(f"{key}: dockerd was restarted (not by the bench) during attempt "
                                         f"{attempt}, which failed ({str(e)[:160]}); measured again")
                return True
        if fallback is not None:
            self.res["sections"][key] = fallback
            self.res["notes"].append(f"{key}: every later attempt failed ({str(e)[:160]}); the figures are "
                                     "from an earlier complete attempt during which dockerd was restarted")
        else:
            self.res["errors"][key] = f"{e.__class__.__name__}: {e}"
        return False

    # ------------------------------------------------------------ results
    def machine(self) -> dict:
        commit = sh("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD", check=False).stdout.strip()
        dirty = sh("git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", "plugin",
                   check=False).stdout.strip()
        return {"nproc": os.cpu_count(), "ram_gib": proc_kb("/proc/meminfo", "MemTotal:") / 1024 / 1024,
                "cpu": proc_field("/proc/cpuinfo", "model name"),
                "kernel": platform.release(),
                "docker": docker("version", "--format", "{{.Server.Version}}", check=False).stdout.strip(),
                "python": platform.python_version(), "iperf3": sh("iperf3", "--version", check=False)
                .stdout.splitlines()[0] if shutil.which("iperf3") else "",
                "wrk": sh("wrk", "--version", check=False).stdout.split("[")[0].strip() if shutil.which("wrk") else "",
                "pynet": f"{commit}{' + uncommitted changes under plugin/' if dirty else ''}",
                "host_ip": self.host_ip}

    def write_report(self) -> None:
        results = {"params": self.p, "quick": self.quick, "machine": self.res.get("machine"),
                   "durations_s": self.durations, **self.res}
        try:
            report.write(self.out, results, self.proxy_off)
        except Exception:  # noqa: BLE001 - the numbers are in results.json anyway
            traceback.print_exc()
        (self.out / "results.json").write_text(json.dumps(results, indent=1, default=str))

    # ------------------------------------------------------------ main
    def run(self) -> int:
        self.preflight()
        self.owns_names = True
        register_session()  # before anything of the bench's exists: test sessions starting now leave it alone
        found = self.cleanup(final=False)
        if found:
            log(f"removed leftovers of an earlier run: {', '.join(found)}")
            self.res["notes"].append(f"leftovers of an earlier bench run removed first: {', '.join(found)}")
        self.res["machine"] = self.machine()
        self.res["started"] = datetime.datetime.now().isoformat(timespec="seconds")
        self.res["load_start"] = os.getloadavg()
        t0 = time.monotonic()
        self.d.start()
        time.sleep(1)
        self.res["rss_idle_kb"] = self.d.rss()
        self.rss_mark("idle, just started")
        for s in SECTIONS:
            if not s.restarts_dockerd or self.proxy_off or s.key in self.only:
                self.section(s)
        self.rss_mark("end of run")
        self.res["load_end"] = os.getloadavg()
        self.res["total_s"] = time.monotonic() - t0
        self.write_report()
        return 1 if self.res["errors"] else 0
