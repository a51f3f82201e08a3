"""DHCPv4 and DHCPv6 leases as pynet keeps them (state files hold `to_dict()`), and their next step (pure)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from .codec import _mac_bytes
from .timers import clamp_times, schedule


@dataclass
class Lease:
    mac: str
    ip: str
    prefixlen: int
    server: str
    server_mac: str
    lease_time: int
    t1: int
    t2: int
    acquired: float  # epoch seconds when the REQUEST that got the last ACK was sent
    router: str = ""
    hostname: str = ""
    renewals: int = 0
    extra: dict = field(default_factory=dict)
    # Added for issue 14; defaults keep older state files loadable.
    identity: str = ""  # the stable identity the client-id was derived from ("" = legacy MAC client-id)
    client_id: str = ""  # option 61 as sent, hex; "" = legacy type 1 + MAC
    domain: str = ""  # with hostname: option 81 carries hostname.domain
    notes: list = field(default_factory=list)  # what pynet overrode in the server's last answer
    # Set when the lease ended with no server renewing it (expiry, or a NAK): the address was taken away.
    lost_at: float = 0.0
    lost_why: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def expires(self) -> float:
        return self.acquired + clamp_times(self.lease_time, self.t1, self.t2)[0]

    @property
    def renew_at(self) -> float:
        return self.acquired + clamp_times(self.lease_time, self.t1, self.t2)[1]

    @property
    def rebind_at(self) -> float:
        return self.acquired + clamp_times(self.lease_time, self.t1, self.t2)[2]

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires

    @property
    def fqdn(self) -> str:
        return f"{self.hostname}.{self.domain}" if self.hostname and self.domain else ""

    def client_id_bytes(self) -> bytes:
        if self.client_id:
            try:
                return bytes.fromhex(self.client_id)
            except ValueError:
                pass
        return b"\x01" + _mac_bytes(self.mac)


def next_action(lease: Lease, now: float, last_attempt: float | None = None) -> tuple[str, float]:
    """What the core's renewal loop does next for `lease` at time `now`: see `schedule`."""
    lifetime, t1, t2 = clamp_times(lease.lease_time, lease.t1, lease.t2)
    return schedule(lease.acquired, t1, t2, lifetime, now, last_attempt)


@dataclass
class Lease6:
    mac: str
    ip: str
    prefixlen: int
    iaid: int
    duid: str  # ours, hex
    server_duid: str  # hex
    server_ip: str  # the server's link-local address
    server_mac: str
    t1: int
    t2: int
    preferred: int
    valid: int  # clamped; the lease ends at acquired + valid
    acquired: float  # epoch seconds when the message that got the last REPLY was first sent
    identity: str = ""
    hostname: str = ""
    domain: str = ""
    renewals: int = 0
    notes: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    # Set when the lease ended with no server renewing it (expiry, or a NAK): the address was taken away.
    lost_at: float = 0.0
    lost_why: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def _times(self) -> tuple[int, int, int]:
        return clamp_times(self.valid, self.t1, self.t2)

    @property
    def expires(self) -> float:
        return self.acquired + self._times()[0]

    @property
    def renew_at(self) -> float:
        return self.acquired + self._times()[1]

    @property
    def rebind_at(self) -> float:
        return self.acquired + self._times()[2]

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires


def next_action6(lease: Lease6, now: float, last_attempt: float | None = None) -> tuple[str, float]:
    """What the core's renewal loop does next for `lease` at `now`: ("renew"|"rebind"|"expired", at)."""
    valid, t1, t2 = lease._times()
    return schedule(lease.acquired, t1, t2, valid, now, last_attempt)
