"""Settings: defaults < YAML file < PYNET_* environment variables.

Every key is optional. Values are validated here so the daemon never starts
with a setting it would trip over later.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import yaml

from .errors import InvalidOption

DEFAULT_SOCKET = "/run/docker/plugins/pynet.sock"
LOG_LEVELS = ("debug", "info", "warning", "error")
SCOPES = ("local", "global")
SCOPE_DEFAULTS = {
    "local": {"state_dir": "/var/lib/pynet", "link_prefix": "pn-", "table": "pynet", "connectivity_scope": "local"},
    "global": {"state_dir": "/var/lib/pynet/global", "link_prefix": "po-", "table": "pynet_global",
               "connectivity_scope": "global"},
}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,19}$")
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{1,6}$")


@dataclasses.dataclass(frozen=True)
class Config:
    socket: str = DEFAULT_SOCKET
    # local: networks of one host (nat, transparent, l2bridge; LAN modes span a swarm through
    # --config-only/--config-from). global: swarm networks allocated by the manager (mode=overlay);
    # Scope is per driver, so users install a second alias of the plugin for it (README).
    scope: str = "local"
    # "" in the three below: the scope's default (SCOPE_DEFAULTS), so a global-scope alias on the
    # same host never shares state, links or table with the local one.
    state_dir: str = ""
    log_level: str = "info"
    # Host ports chosen for `-p N` (host port 0); empty = the kernel's ip_local_port_range.
    port_range: str = ""
    # Kernel objects carry this prefix so leftovers are recognisable ("pn-").
    link_prefix: str = ""
    # nftables table (inet family) owned by this daemon.
    table: str = ""
    # Seconds between checks that Docker's DOCKER-USER chain still lets pynet's traffic through.
    firewall_check_interval: float = 5.0
    # Largest accepted request body, in bytes.
    max_body: int = 16 << 20  # Docker sends a container's whole port map in one body: ~105 B a port
    # DHCP: renew this many seconds after each ACK instead of at the server's T1 (0 = T1).
    dhcp_renew_after: float = 0.0
    # What Docker is told (GetCapabilities). ConnectivityScope "global" makes a swarm do service
    # discovery (tasks.<svc>, the service name) across nodes for networks of this driver; "" = the
    # scope (a global-scope driver is always global).
    connectivity_scope: str = ""
    # LAN modes: before an address is used, probe it on the parent (ARP probe / DAD NS) for this long
    # (seconds; 0 = never probe), sending probe_count probes spread over that time.
    probe_wait: float = 0.2
    probe_count: int = 2
    # Also serve /metrics (Prometheus text) on this TCP address, e.g. 127.0.0.1:9641 ("" = only on the socket).
    metrics_address: str = ""

    def __post_init__(self):
        for name, value in SCOPE_DEFAULTS.get(self.scope, SCOPE_DEFAULTS["local"]).items():
            if getattr(self, name) == "":
                object.__setattr__(self, name, value)

    @property
    def driver_name(self) -> str:
        """Docker names a legacy plugin after its socket file: pynet.sock -> pynet."""
        name = Path(self.socket).name
        return name[: -len(".sock")] if name.endswith(".sock") else name

    @property
    def owner_tag(self) -> str:
        """Written into IFLA_IFALIAS of every link this daemon makes: how leftovers are found."""
        return f"pynet:{self.table}:"


def _coerce(field: dataclasses.Field, value, source: str):
    if field.type in ("int", int):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InvalidOption(f"{source}: {field.name} must be an integer, got {value!r}") from None
    if field.type in ("float", float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InvalidOption(f"{source}: {field.name} must be a number, got {value!r}") from None
    if not isinstance(value, (str, int, float)):
        raise InvalidOption(f"{source}: {field.name} must be a string, got {value!r}")
    return str(value)


def load(path: str | None = None, env: dict[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    fields = {f.name: f for f in dataclasses.fields(Config)}
    values: dict = {}
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except OSError as e:
            raise InvalidOption(f"config file {path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise InvalidOption(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise InvalidOption(f"config file {path} must hold a mapping of keys to values")
        for key, value in data.items():
            if key not in fields:
                raise InvalidOption(
                    f"config file {path}: unknown key {key!r}; known keys: {', '.join(sorted(fields))}"
                )
            values[key] = _coerce(fields[key], value, f"config file {path}")
    for name, field in fields.items():
        var = "PYNET_" + name.upper()
        if env.get(var, "") != "":
            values[name] = _coerce(field, env[var], f"environment {var}")
    cfg = Config(**values)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    if cfg.log_level not in LOG_LEVELS:
        raise InvalidOption(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {cfg.log_level!r}")
    if not cfg.socket.startswith("/"):
        raise InvalidOption(f"socket must be an absolute path, got {cfg.socket!r}")
    if not cfg.state_dir.startswith("/"):
        raise InvalidOption(f"state_dir must be an absolute path, got {cfg.state_dir!r}")
    if not _PREFIX_RE.match(cfg.link_prefix):
        raise InvalidOption(
            f"link_prefix must be 2-7 characters of a-z, 0-9 and '-', starting with a letter; got {cfg.link_prefix!r}"
        )
    if not _NAME_RE.match(cfg.table):
        raise InvalidOption(f"table must match {_NAME_RE.pattern}, got {cfg.table!r}")
    if cfg.port_range:
        parse_port_range(cfg.port_range)
    if not 0 <= cfg.dhcp_renew_after <= 86400 * 365:  # also refuses nan and inf
        raise InvalidOption(f"dhcp_renew_after must be 0 (use the server's T1) to 31536000 seconds, "
                            f"got {cfg.dhcp_renew_after!r}")
    if cfg.scope not in SCOPES:
        raise InvalidOption(f"scope must be local or global, got {cfg.scope!r}")
    if cfg.connectivity_scope not in SCOPES:
        raise InvalidOption(f"connectivity_scope must be local or global, got {cfg.connectivity_scope!r}")
    if not 0 <= cfg.probe_wait <= 10:  # also refuses nan
        raise InvalidOption(f"probe_wait must be 0 (never probe) to 10 seconds, got {cfg.probe_wait!r}")
    if not 1 <= cfg.probe_count <= 10:
        raise InvalidOption(f"probe_count must be 1 to 10, got {cfg.probe_count!r}")
    if cfg.scope == "global" and cfg.connectivity_scope != "global":
        raise InvalidOption("connectivity_scope local is not possible with scope global: a swarm-wide network "
                            "is connected across nodes; leave connectivity_scope empty")
    if not 1024 <= cfg.max_body <= 1 << 30:
        raise InvalidOption(f"max_body must be 1024 to {1 << 30} bytes, got {cfg.max_body!r}")
    if cfg.metrics_address:
        parse_address(cfg.metrics_address)
    if not 0 < cfg.firewall_check_interval <= 3600:
        raise InvalidOption("firewall_check_interval must be between 0 and 3600 seconds")


def parse_port_range(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[-:\s]\s*(\d+)\s*", text)
    if not m:
        raise InvalidOption(f"port_range must look like 32768-60999, got {text!r}")
    lo, hi = int(m.group(1)), int(m.group(2))
    if not 1 <= lo <= hi <= 65535:
        raise InvalidOption(f"port_range must be within 1-65535 with low <= high, got {text!r}")
    return lo, hi


def parse_address(text: str) -> tuple[str, int]:
    """metrics_address: HOST:PORT or [IPv6]:PORT -> (host, port)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\s\[\]]+):(\d+)", text.strip())
    if not m or not 1 <= int(m.group(2) or m.group(4)) <= 65535:
        raise InvalidOption(f"metrics_address must be HOST:PORT or [IPv6]:PORT (e.g. 127.0.0.1:9641), got {text!r}")
    return (m.group(1) or m.group(3)), int(m.group(2) or m.group(4))
