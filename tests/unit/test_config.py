"""config.py: defaults < YAML file < PYNET_* environment, validated before the daemon starts."""

from __future__ import annotations

import dataclasses
import math

import pytest

from pynet import config
from pynet.config import Config
from pynet.errors import InvalidOption

FULL_YAML = """\
socket: /run/docker/plugins/pynet-x.sock
state_dir: /var/lib/pynet-x
log_level: debug
port_range: 20000-20100
link_prefix: px-
table: pynet_x
firewall_check_interval: 2.5
max_body: 4096
dhcp_renew_after: 30
probe_wait: 0.5
probe_count: 3
"""


def write(tmp_path, text: str) -> str:
    path = tmp_path / "pynet.yaml"
    path.write_text(text)
    return str(path)


def test_defaults_without_file_or_env():
    cfg = config.load(None, env={})
    assert cfg == Config()
    assert cfg.socket == "/run/docker/plugins/pynet.sock"
    assert cfg.state_dir == "/var/lib/pynet"
    assert (cfg.log_level, cfg.port_range, cfg.link_prefix, cfg.table) == ("info", "", "pn-", "pynet")
    assert cfg.firewall_check_interval == 5.0 and cfg.max_body == 16 << 20 and cfg.dhcp_renew_after == 0.0
    assert cfg.driver_name == "pynet"
    assert cfg.owner_tag == "pynet:pynet:"


def test_yaml_sets_every_key(tmp_path):
    cfg = config.load(write(tmp_path, FULL_YAML), env={})
    assert cfg == Config(socket="/run/docker/plugins/pynet-x.sock", state_dir="/var/lib/pynet-x", log_level="debug",
                         port_range="20000-20100", link_prefix="px-", table="pynet_x", firewall_check_interval=2.5,
                         max_body=4096, dhcp_renew_after=30.0, probe_wait=0.5, probe_count=3)
    assert isinstance(cfg.max_body, int) and isinstance(cfg.firewall_check_interval, float)
    assert cfg.driver_name == "pynet-x"
    assert cfg.owner_tag == "pynet:pynet_x:"


def test_example_config_in_repo_loads():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "pynet.example.yaml"
    assert config.load(str(example), env={}) == Config(firewall_check_interval=5.0)


def test_env_overrides_yaml(tmp_path):
    env = {"PYNET_TABLE": "pynet_env", "PYNET_MAX_BODY": "2048", "PYNET_FIREWALL_CHECK_INTERVAL": "0.5",
           "PYNET_LOG_LEVEL": ""}  # empty = not set
    cfg = config.load(write(tmp_path, FULL_YAML), env=env)
    assert cfg.table == "pynet_env" and cfg.max_body == 2048 and cfg.firewall_check_interval == 0.5
    assert cfg.log_level == "debug"  # from the file: the empty variable does not override
    assert cfg.socket == "/run/docker/plugins/pynet-x.sock"


def test_env_every_key():
    values = {"socket": "/tmp/a/b.sock", "state_dir": "/tmp/state", "log_level": "warning",
              "port_range": "1000-2000", "link_prefix": "ab-", "table": "t1", "firewall_check_interval": "7",
              "max_body": "4000", "dhcp_renew_after": "1.5", "connectivity_scope": "global", "probe_wait": "0",
              "probe_count": "1", "scope": "global", "metrics_address": "[::1]:9641"}
    assert set(values) == {f.name for f in dataclasses.fields(Config)}, "a new setting needs a test here"
    cfg = config.load(None, env={"PYNET_" + k.upper(): v for k, v in values.items()})
    assert cfg == Config(socket="/tmp/a/b.sock", state_dir="/tmp/state", log_level="warning", port_range="1000-2000",
                         link_prefix="ab-", table="t1", firewall_check_interval=7.0, max_body=4000,
                         dhcp_renew_after=1.5, connectivity_scope="global", probe_wait=0.0, probe_count=1,
                         scope="global", metrics_address="[::1]:9641")


def test_scope_sets_its_own_defaults():
    """A global-scope alias of the plugin on the same host as the local one must share no state dir,
    link prefix or table with it (each would sweep the other's links and rewrite its table)."""
    local, glob = config.load(None, env={}), config.load(None, env={"PYNET_SCOPE": "global"})
    assert (local.state_dir, local.link_prefix, local.table, local.connectivity_scope) == (
        "/var/lib/pynet", "pn-", "pynet", "local")
    assert (glob.state_dir, glob.link_prefix, glob.table, glob.connectivity_scope) == (
        "/var/lib/pynet/global", "po-", "pynet_global", "global")
    assert config.load(None, env={"PYNET_SCOPE": "global", "PYNET_TABLE": "t2"}).table == "t2"
    with pytest.raises(InvalidOption, match="scope must be local or global"):
        config.load(None, env={"PYNET_SCOPE": "swarm"})
    with pytest.raises(InvalidOption, match="connectivity_scope local is not possible with scope global"):
        config.load(None, env={"PYNET_SCOPE": "global", "PYNET_CONNECTIVITY_SCOPE": "local"})


def test_process_environment_is_the_default(monkeypatch):
    for f in dataclasses.fields(Config):
        monkeypatch.delenv("PYNET_" + f.name.upper(), raising=False)
    monkeypatch.setenv("PYNET_STATE_DIR", "/tmp/from-env")
    assert config.load().state_dir == "/tmp/from-env"


def test_unrelated_pynet_env_ignored():
    assert config.load(None, env={"PYNET_TEST_TAG": "zz", "PYNET_NOT_A_KEY": "1"}) == Config()


def test_empty_yaml_file_gives_defaults(tmp_path):
    assert config.load(write(tmp_path, "# nothing\n"), env={}) == Config()


def test_unknown_yaml_key_named(tmp_path):
    path = write(tmp_path, "sockett: /x.sock\n")
    with pytest.raises(InvalidOption, match="unknown key 'sockett'") as ei:
        config.load(path, env={})
    assert path in str(ei.value) and "socket" in str(ei.value).split("known keys:")[1]


def test_yaml_not_a_mapping(tmp_path):
    with pytest.raises(InvalidOption, match="must hold a mapping"):
        config.load(write(tmp_path, "- a\n- b\n"), env={})


def test_yaml_syntax_error(tmp_path):
    with pytest.raises(InvalidOption, match="is not valid YAML"):
        config.load(write(tmp_path, "socket: [unclosed\n"), env={})


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(InvalidOption, match="No such file") as ei:
        config.load(path, env={})
    assert path in str(ei.value)


@pytest.mark.parametrize("text, match", [
    ("max_body: lots\n", "max_body must be an integer, got 'lots'"),
    ("firewall_check_interval: soon\n", "firewall_check_interval must be a number"),
    ("table: [a, b]\n", "table must be a string"),
    ("table:\n", "table must be a string, got None"),
])
def test_yaml_bad_types(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(InvalidOption, match=match) as ei:
        config.load(path, env={})
    assert f"config file {path}" in str(ei.value)


def test_env_bad_type_names_variable():
    with pytest.raises(InvalidOption, match="environment PYNET_MAX_BODY: max_body must be an integer"):
        config.load(None, env={"PYNET_MAX_BODY": "1MB"})


@pytest.mark.parametrize("key, value, match", [
    ("LOG_LEVEL", "verbose", "log_level must be one of debug, info, warning, error"),
    ("LOG_LEVEL", "DEBUG", "log_level must be one of"),
    ("SOCKET", "pynet.sock", "socket must be an absolute path"),
    ("STATE_DIR", "state", "state_dir must be an absolute path"),
    ("LINK_PREFIX", "p", "link_prefix must be 2-7 characters"),
    ("LINK_PREFIX", "toolong-", "link_prefix"),
    ("LINK_PREFIX", "Pn-", "link_prefix"),
    ("TABLE", "pynet-x", "table must match"),
    ("TABLE", "1pynet", "table must match"),
    ("PORT_RANGE", "60999-32768", "port_range must be within 1-65535 with low <= high"),
    ("PORT_RANGE", "0-100", "port_range must be within"),
    ("PORT_RANGE", "1000-70000", "port_range must be within"),
    ("PORT_RANGE", "lots", "port_range must look like 32768-60999"),
    ("FIREWALL_CHECK_INTERVAL", "0", "firewall_check_interval must be between 0 and 3600"),
    ("FIREWALL_CHECK_INTERVAL", "3601", "firewall_check_interval"),
    ("FIREWALL_CHECK_INTERVAL", "nan", "firewall_check_interval"),
    ("DHCP_RENEW_AFTER", "-1", "dhcp_renew_after must be 0"),
    ("PROBE_WAIT", "-0.1", "probe_wait must be 0 .never probe. to 10 seconds"),
    ("PROBE_WAIT", "nan", "probe_wait"),
    ("PROBE_COUNT", "0", "probe_count must be 1 to 10"),
    ("PROBE_COUNT", "2.5", "probe_count must be an integer"),
])
def test_bad_values(key, value, match):
    with pytest.raises(InvalidOption, match=match):
        config.load(None, env={f"PYNET_{key}": value})


@pytest.mark.parametrize("text, pair", [("32768-60999", (32768, 60999)), ("1000:2000", (1000, 2000)),
                                        (" 1000 2000 ", (1000, 2000)), ("5-5", (5, 5))])
def test_parse_port_range(text, pair):
    assert config.parse_port_range(text) == pair


def test_driver_name_without_sock_suffix():
    assert Config(socket="/run/docker/plugins/pn").driver_name == "pn"


@pytest.mark.parametrize("value", ["-1", "0"])
def test_max_body_must_be_positive(value):
    with pytest.raises(InvalidOption, match="max_body"):
        config.load(None, env={"PYNET_MAX_BODY": value})


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_dhcp_renew_after_must_be_finite(value):
    with pytest.raises(InvalidOption, match="dhcp_renew_after"):
        cfg = config.load(None, env={"PYNET_DHCP_RENEW_AFTER": value})
        assert math.isfinite(cfg.dhcp_renew_after)


def test_managed_plugin_defaults_are_the_daemons():
    """config.json's settable env once capped bodies at 1 MiB while the daemon's default is 16 MiB:
    an 11,000-port range failed only under the managed plugin. Every PYNET_* default must be the
    daemon's own (an empty value means "the daemon's default")."""
    import dataclasses
    import json
    from pathlib import Path

    doc = json.loads((Path(__file__).resolve().parents[2] / "config.json").read_text())
    defaults = {f.name: f.default for f in dataclasses.fields(config.Config)}
    seen = set()
    for item in doc["Env"]:
        key = item["Name"].removeprefix("PYNET_").lower()
        assert key in defaults, f"config.json sets {item['Name']}, which pynet does not know"
        seen.add(key)
        if item["Value"] == "":
            continue
        parsed = config.load(None, env={item["Name"]: item["Value"]})
        assert getattr(parsed, key) == defaults[key], f"{item['Name']}={item['Value']} differs from the default"
    assert {"log_level", "port_range", "max_body", "dhcp_renew_after", "metrics_address"} <= seen


def test_connectivity_scope_reaches_get_capabilities_and_is_checked(tmp_path):
    from pynet.api import wire

    assert wire.capabilities("local", config.load(None, env={"PYNET_CONNECTIVITY_SCOPE": "global"})
                             .connectivity_scope)["ConnectivityScope"] == "global"
    with pytest.raises(InvalidOption, match="connectivity_scope must be local or global"):
        config.load(None, env={"PYNET_CONNECTIVITY_SCOPE": "swarm"})
