"""Bandwidth limits as users write them: parsing, merging, defaults. Pure (no kernel, no state).

Four keys, in the container's point of view (ingress = into the container):

  ingress_rate, egress_rate     bits per second: 500kbit, 10mbit, 1.5gbit (decimal units, as tc);
                                0 or none = no limit (an endpoint's override of a network default)
  ingress_burst, egress_burst   bytes: 20000b, 64kb, 1mb (binary units, as tc: 64kb = 65536 bytes)

A network's -o keys are its defaults; an endpoint's --driver-opt keys and `pynet limit`
override them key by key. How a direction is enforced (a shaper or a policer) is the
mode's business (modes/*.py, Mode.limit); the burst a user leaves out is chosen here,
from the rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidOption

RATE_KEYS = ("ingress_rate", "egress_rate")
BURST_KEYS = ("ingress_burst", "egress_burst")
KEYS = ("ingress_rate", "ingress_burst", "egress_rate", "egress_burst")
NONE = ("0", "none", "unlimited")
MIN_RATE = 64_000  # bits/s: below that a default burst (64 KiB) would last seconds
MAX_RATE = (2**32 - 1) * 8  # tc's 32-bit rate in bytes/s (~34.4 Gbit/s): beyond it, no limit is the honest answer
MIN_BURST = 1518  # one full Ethernet frame (a network's MTU may ask for more: check())
MAX_BURST_SECONDS = 60  # tc keeps a burst as the time it takes at the rate, in a 32-bit tick count
DEFAULT_BURST_SECONDS = 0.01  # 10 ms at the rate...
DEFAULT_MIN_BURST = 64 * 1024  # ...and never less than one GSO/GRO super-packet
_RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}
_SIZE_UNITS = {"b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
               "g": 1024**3, "gb": 1024**3, "gib": 1024**3}
_NUM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")


def parse_rate(key: str, value) -> int:
    """'10mbit' -> 10_000_000 bits/s; 0/none -> 0 (no limit)."""
    text = str(value).strip().lower()
    if text in NONE:
        return 0
    m = _NUM.match(text)
    if not m or m.group(2) not in _RATE_UNITS:
        raise InvalidOption(f"option {key} must be a rate like 500kbit, 10mbit or 1gbit (or none), got {value!r}")
    bits = int(float(m.group(1)) * _RATE_UNITS[m.group(2)])
    if not MIN_RATE <= bits <= MAX_RATE:
        raise InvalidOption(f"option {key} must be between 64kbit and 34gbit (or none), got {value!r}")
    return bits


def parse_burst(key: str, value) -> int:
    """'64kb' -> 65536 bytes; 0/none -> 0 (the default for the rate)."""
    text = str(value).strip().lower()
    if text in NONE:
        return 0
    m = _NUM.match(text)
    if not m or m.group(2) not in _SIZE_UNITS:
        raise InvalidOption(f"option {key} must be a size in bytes like 64kb, 1mb or 20000b, got {value!r}")
    size = int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])
    if size < MIN_BURST:
        raise InvalidOption(f"option {key} must be at least 1518b (a burst smaller than a frame lets nothing "
                            f"through), got {value!r}")
    return size


def parse(options: dict, where: str) -> dict[str, int]:
    """The limit keys among `options` -> {key: number}; `where` names them in errors ("-o", "--driver-opt")."""
    out = {}
    for key in KEYS:
        if key in options:
            parse_one = parse_rate if key in RATE_KEYS else parse_burst
            out[key] = parse_one(f"{key} ({where} {key}=...)", options[key])
    return out


def fmt_rate(bits: int) -> str:
    for unit, n in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bits >= n:
            return f"{bits / n:g}{unit}"
    return f"{bits}bit"


def fmt_size(size: int) -> str:
    for unit, n in (("mb", 1024**2), ("kb", 1024)):
        if size >= n and size % n == 0:
            return f"{size // n}{unit}"
    return f"{size}b"


@dataclass(frozen=True)
class Direction:
    """One direction's limit: rate in bits/s (0: none), burst in bytes (0: chosen from the rate)."""

    rate: int = 0
    burst: int = 0

    def __bool__(self) -> bool:
        return self.rate > 0

    def burst_or_default(self) -> int:
        return self.burst or max(DEFAULT_MIN_BURST, int(self.rate / 8 * DEFAULT_BURST_SECONDS))


@dataclass(frozen=True)
class Rates:
    """What an endpoint gets, both directions (ingress = into the container)."""

    ingress: Direction = Direction()
    egress: Direction = Direction()

    def __bool__(self) -> bool:
        return bool(self.ingress or self.egress)

    def as_options(self) -> dict[str, str]:
        out = {}
        for name, d in (("ingress", self.ingress), ("egress", self.egress)):
            if d:
                out[f"{name}_rate"] = fmt_rate(d.rate)
                out[f"{name}_burst"] = fmt_size(d.burst_or_default())
        return out


def effective(defaults: dict[str, int], overrides: dict[str, int]) -> Rates:
    """A network's defaults with an endpoint's overrides on top, key by key."""
    merged = {**defaults, **overrides}
    return Rates(Direction(merged.get("ingress_rate", 0), merged.get("ingress_burst", 0)),
                 Direction(merged.get("egress_rate", 0), merged.get("egress_burst", 0)))


def check(defaults: dict[str, int], overrides: dict[str, int], mtu: int = 0) -> Rates:
    """The merged limits, or an error: a burst with no rate to go with it, one shorter than a frame
    of the network, one longer than tc can hold at its rate."""
    rates = effective(defaults, overrides)
    frame = (mtu or 1500) + 18  # Ethernet header, VLAN tag, FCS
    for name, d in (("ingress", rates.ingress), ("egress", rates.egress)):
        if d.burst and not d.rate:
            raise InvalidOption(f"{name}_burst needs an {name}_rate (neither the endpoint nor its network sets one)")
        if d.rate and d.burst and d.burst < frame:
            raise InvalidOption(f"{name}_burst {fmt_size(d.burst)} is smaller than one frame of this network "
                                f"({frame} bytes): nothing would get through")
        if d.rate and d.burst_or_default() * 8 > d.rate * MAX_BURST_SECONDS:
            raise InvalidOption(f"{name}_burst {fmt_size(d.burst_or_default())} lasts more than "
                                f"{MAX_BURST_SECONDS} s at {fmt_rate(d.rate)}; give a smaller burst or a higher rate")
    return rates


def change(current: dict[str, int], settings: dict[str, str]) -> dict[str, int]:
    """`pynet limit` KEY=VALUE settings applied to an endpoint's overrides; VALUE `default` drops the
    override (the network's default applies again)."""
    out = dict(current)
    for key, value in settings.items():
        if key not in KEYS:
            raise InvalidOption(f"unknown limit {key!r}; pynet knows: {', '.join(KEYS)}")
        if str(value).strip().lower() == "default":
            out.pop(key, None)
        else:
            out.update(parse({key: value}, "pynet limit"))
    return out
