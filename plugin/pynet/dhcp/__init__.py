"""pynet.dhcp: DHCPv4 (codec, lease, timers, client), DHCPv6 (codec6, client6), SLAAC (ra, link6) for a container's MAC.

Each acts for a container from the host's parent interface (the container's interface may not exist yet).
The core (core/leases.py, core/ipam.py) calls them; they never call the core. DHCPv4's names are
re-exported here (`dhcp.Client`, `dhcp.Lease`, `dhcp.next_action`, ...).

DHCPv4 client: acts for a container's MAC from the host's parent interface.

Contract for the core (transparent mode, `--ipam-driver pynet`)
----------------------------------------------------------------
    client = dhcp.Client(retries=3, timeout=2.0)
    lease = await client.acquire(parent, mac, hostname="", prefix_default=24, *,
                                 identity=None, domain="", subnet=None)
    lease = await client.renew(parent, lease, rebind=False)
    await client.release(parent, lease)
    action, at = dhcp.next_action(lease, now, last_attempt=None)   # pure: "renew" | "rebind" | "expired"

- `identity`: a stable name for the container (its name, or the endpoint's), NOT the MAC. It becomes the
  client identifier (option 61) = type 0 + the identity's UTF-8 bytes (1..254 bytes), so a reservation by
  client-id (dnsmasq `dhcp-host=id:web1,192.168.1.50`; Kea/ISC: hex `00:77:65:62:31`) follows a container
  re-created with another MAC. Without it the client-id is the legacy type 1 + MAC (what pynet sent before).
  `client_id_for(identity)` gives the bytes. Renewals and the release repeat `lease.client_id`.
- `hostname`: option 12 (cut at 63 bytes). With `domain`, option 81 (client FQDN, RFC 4702) carries
  `hostname.domain` in wire format with flags S|E ("server, update the A record") INSTEAD of option 12,
  as RFC 4702 3.1 requires. To announce a new hostname later, set `lease.hostname` and call renew().
- The network's own prefix wins over the server's subnet mask (option 1): pass `subnet` (e.g.
  "192.168.1.0/24"; then the offered address must also lie inside it) or at least `prefix_default`.
  A mask that disagrees (or is no mask at all, e.g. 255.0.255.0) is logged and noted in `lease.notes`.
- Replies are checked before use: an address that is 0.0.0.0, broadcast, multicast, loopback,
  link-local, reserved, or outside `subnet` (or its network/broadcast address) is refused with a
  DhcpError naming it; malformed options (wrong lengths, truncated, unknown message type) make that
  reply unusable; if every answer in a try was unusable the DhcpError says why, without further tries.
- Lease time, T1 and T2 are clamped (`clamp_times`): MIN_LEASE <= lease <= MAX_LEASE,
  MIN_T1 <= T1 < T2 < lease (a T1 of 0 cannot cause a renewal storm). What was changed is in `notes`.
- Errors: DhcpNak (a subclass of DhcpError) means the server refused: the lease is gone, stop using the
  address (acquire again). Any other DhcpError is "no usable answer": retry per next_action() until
  "expired". KernelError: the parent cannot be opened.
- renew() needs the container's interface up with the leased address: a server unicasts a renewal's
  ACK to ciaddr (RFC 2131 4.1), i.e. ARPs for it. acquire() works before the container exists.
- What to persist: `lease.to_dict()`; `Lease(**d)` loads it (fields added since are defaulted, so
  older state files load). The core's renewal loop:
        action, at = next_action(lease, time.time(), last_attempt)
        sleep until `at`; if action == "expired": the address is no longer ours;
        else renew(parent, lease, rebind=(action == "rebind")) -> new lease, last_attempt = None;
             on DhcpNak: lease lost; on DhcpError: last_attempt = now, loop.
"""

from .client import Client
from .codec import (ACK, DECLINE, DISCOVER, NAK, OFFER, RELEASE, REQUEST, DhcpError, DhcpNak, Message,
                    check_address, check_complete, client_id_for, decode_reply, fqdn_option, request)
from .lease import Lease, next_action
from .timers import MAX_LEASE, MIN_LEASE, MIN_RETRY, MIN_T1, clamp_times, schedule

__all__ = ["ACK", "DECLINE", "DISCOVER", "MAX_LEASE", "MIN_LEASE", "MIN_RETRY", "MIN_T1", "NAK", "OFFER", "RELEASE",
           "REQUEST", "Client", "DhcpError", "DhcpNak", "Lease", "Message", "check_address", "check_complete",
           "clamp_times", "client_id_for", "decode_reply", "fqdn_option", "next_action", "request", "schedule"]
