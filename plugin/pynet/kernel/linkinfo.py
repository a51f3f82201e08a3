"""What Links reports about a link, and the checks ensure_* share."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from ..errors import KernelError

# Removing something from a device that went meanwhile is done, not an error: a container's veth
# goes with its namespace, which the kernel tears down in the background, so it can vanish between
# the look-up by name and the change (Docker deletes the sandbox before DeleteEndpoint).
GONE = (errno.ENODEV,)


@dataclass
class LinkInfo:
    index: int
    name: str
    alias: str
    kind: str
    master: int
    mac: str
    mtu: int
    up: bool


def info(msg) -> LinkInfo:
    linkinfo = msg.get("IFLA_LINKINFO")
    kind = linkinfo.get("IFLA_INFO_KIND") if linkinfo is not None else ""
    return LinkInfo(
        index=msg["index"],
        name=msg.get("IFLA_IFNAME"),
        alias=msg.get("IFLA_IFALIAS") or "",
        kind=kind or "",
        master=msg.get("IFLA_MASTER") or 0,
        mac=(msg.get("IFLA_ADDRESS") or "").lower(),
        mtu=msg.get("IFLA_MTU") or 0,
        up=bool(msg["flags"] & 1),
    )


def same_owner(link: LinkInfo, alias: str) -> None:
    """Link names hold a prefix of an object's ID: two IDs sharing it must not share the link."""
    if link.alias and alias and link.alias != alias:
        raise KernelError(f"interface {link.name} already belongs to another pynet object ({link.alias}); "
                          f"IDs sharing their first digits cannot share a link name")


def sysctl_quiet(path: str, value: str) -> None:
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except OSError:
        pass
