"""An address on a container's interface, from the host: add or remove it inside the container's namespace.

Used when a DHCP lease expires with no server (the address is taken away) and when it is bound again.
The namespace is Docker's SandboxKey (/var/run/docker/netns/<id>); the interface is found by its MAC.
setns() changes only the calling thread's namespace, so each call runs in a fresh thread that ends
with the call (never a pooled thread that could run other work in the container's namespace).
A managed plugin does not see Docker's netns paths: the call then fails with a KernelError saying so.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import os
import threading

from ..errors import KernelError

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _in_netns(path: str, fn):
    out: dict = {}

    def target() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            out["error"] = KernelError(f"the container's namespace {path} is not visible to pynet "
                                       f"({e.strerror}; a managed plugin cannot see it)")
            return
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                out["error"] = KernelError(f"cannot enter the container's namespace {path}: "
                                           f"{os.strerror(ctypes.get_errno())}")
                return
        finally:
            os.close(fd)
        try:
            out["value"] = fn()
        except Exception as e:  # noqa: BLE001 - handed to the caller
            out["error"] = e

    t = threading.Thread(target=target, name="pynet-sandbox", daemon=True)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def _set_addr(mac: str, cidr: str, present: bool) -> bool:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    ip = ipaddress.ip_interface(cidr)
    with IPRoute() as ipr:
        links = [m for m in ipr.get_links() if (m.get("IFLA_ADDRESS") or "").lower() == mac.lower()]
        if not links:
            return False
        index = links[0]["index"]
        kw = {"index": index, "address": str(ip.ip), "prefixlen": ip.network.prefixlen}
        try:
            if present:
                ipr.addr("add", **kw, **({"flags": 0x02} if ip.version == 6 else {}))  # IFA_F_NODAD: ours
            else:
                ipr.addr("del", **kw)
        except NetlinkError as e:
            if e.code not in (17, 99, 2):  # EEXIST, EADDRNOTAVAIL, ENOENT: already so
                raise KernelError(f"cannot {'add' if present else 'remove'} {cidr} in the container: {e}") from None
            return False
        return True


async def set_container_addr(sandbox: str, mac: str, cidr: str, present: bool) -> bool:
    """Add (present) or remove `cidr` on the interface with `mac` in namespace `sandbox`; True if changed."""
    if not sandbox:
        return False
    return await asyncio.get_running_loop().run_in_executor(None, _in_netns, sandbox,
                                                            lambda: _set_addr(mac, cidr, present))
