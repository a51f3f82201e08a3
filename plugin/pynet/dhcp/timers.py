"""DHCP timers, pure: what a server's lease time, T1 and T2 become, and when to renew, rebind or give up.

Shared by DHCPv4 (lease.py) and DHCPv6 (client6.py): `clamp_times` keeps a hostile or broken server's
values sane (a T1 of 0 cannot cause a renewal storm), `schedule` is the RFC 2131 4.4.5 / RFC 8415 18.2.4
state machine with backed-off retries.
"""

from __future__ import annotations

# Sane bounds for what a server says (seconds). A shorter lease is taken as MIN_LEASE (the server may
# consider it gone earlier: a server handing out sub-minute leases is broken, and renewing it faster
# would be a storm); "infinite" (0xffffffff) and anything longer is taken as MAX_LEASE, which only
# means pynet renews at least every MAX_LEASE/2.
MIN_LEASE = 60
MAX_LEASE = 30 * 86400
MIN_T1 = 30  # never renew sooner than this after an ACK (lease >= 60 gives lease // 2 >= 30)
MIN_RETRY = 10  # after a failed renewal, wait at least this long (RFC 2131 says 60 s; leases here are short)


def clamp_times(lease_time: int, t1: int | None, t2: int | None, notes: list | None = None) -> tuple[int, int, int]:
    """(lease, T1, T2) within MIN_LEASE <= lease <= MAX_LEASE and MIN_T1 <= T1 < T2 < lease.

    Values are read as unsigned 32-bit (0xffffffff = infinite). A missing or impossible T1/T2 becomes
    RFC 2131's default (lease/2, lease*7/8). `notes` collects what was changed.
    """
    def note(msg: str) -> None:
        if notes is not None:
            notes.append(msg)

    raw = int(lease_time) & 0xFFFFFFFF
    lease = min(max(raw, MIN_LEASE), MAX_LEASE)
    if lease != raw:
        note(f"lease time {raw} s taken as {lease} s")
    d1, d2 = lease // 2, lease * 7 // 8
    a = None if t1 is None else int(t1) & 0xFFFFFFFF
    b = None if t2 is None else int(t2) & 0xFFFFFFFF
    if a is None or not MIN_T1 <= a < lease:
        if a is not None:
            note(f"T1 {a} s taken as {d1} s")
        a = d1
    if b is None or not a < b < lease:
        if b is not None:
            note(f"T2 {b} s taken as {max(d2, a + 1)} s")
        b = max(d2, a + 1)
        if b >= lease:  # T1 close to the lease end: fall back to both defaults
            note(f"T1 {a} s leaves no room for T2: T1 {d1} s, T2 {d2} s")
            a, b = d1, d2
    return lease, a, b


def schedule(acquired: float, t1: float, t2: float, lifetime: float, now: float,
             last_attempt: float | None = None, min_retry: float = MIN_RETRY) -> tuple[str, float]:
    """The next step of a lease, as (action, at): "renew" / "rebind" at epoch `at`, or "expired".

    `t1`, `t2`, `lifetime` are seconds after `acquired` (already clamped). After a failed attempt
    (`last_attempt`), the next one comes after half the time left to the next deadline, at least
    `min_retry` later (RFC 2131 4.4.5 / RFC 8415 18.2.4), so a dead server costs a few packets per lease.
    """
    renew_at, rebind_at, expires = acquired + t1, acquired + t2, acquired + lifetime
    if now >= expires:
        return "expired", expires
    if last_attempt is None or last_attempt < renew_at:
        return ("renew", renew_at) if now < rebind_at else ("rebind", max(rebind_at, now))
    if last_attempt < rebind_at:
        at = last_attempt + max(min_retry, (rebind_at - last_attempt) / 2)
        if at < rebind_at:
            return "renew", at
        at = max(rebind_at, last_attempt + min_retry)  # REBINDING starts at T2, but not right after a try
    else:
        at = last_attempt + max(min_retry, (expires - last_attempt) / 2)
    return ("rebind", at) if at < expires else ("expired", expires)

