"""The network modes, by name. Adding a mode: a module with a Mode subclass, listed here."""

from __future__ import annotations

from .base import CREATED, GONE, IN_CONTAINER, POLICE, POLICE_DEST, SHAPE, SHAPE_SOURCE, Limiter, Mode
from .l2bridge import L2BridgeMode
from .nat import NatMode
from .overlay import OverlayMode
from .transparent import TransparentMode

# The first mode of a scope is that scope's default (no -o mode).
MODE_CLASSES: dict[str, type[Mode]] = {cls.NAME: cls for cls in (NatMode, TransparentMode, L2BridgeMode,
                                                                 OverlayMode)}
DEFAULT = NatMode.NAME


def make_modes(links, sysctl, owner_tag: str, scope: str = "local", node=None, police=None) -> dict[str, Mode]:
    return {name: cls(links, sysctl, owner_tag, scope, node, police) for name, cls in MODE_CLASSES.items()}


__all__ = ["CREATED", "DEFAULT", "GONE", "IN_CONTAINER", "MODE_CLASSES", "POLICE", "POLICE_DEST", "SHAPE",
           "SHAPE_SOURCE", "Limiter", "Mode", "make_modes"]
