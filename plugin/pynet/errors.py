"""Typed errors. Each becomes {"Err": message} in one place (api/protocol.py).

The message reaches the user's terminal through `docker`, so it must name what
to change, not how pynet failed inside.
"""


class PynetError(Exception):
    """Base class: an error whose message is fit for the user."""

    status = 500


class InvalidRequest(PynetError):
    """The request body is not what the protocol says (garbage JSON, wrong types)."""

    status = 400


class InvalidOption(PynetError):
    """A -o / --driver-opt / --subnet value that pynet refuses."""


class Conflict(PynetError):
    """The request collides with something that exists (subnet, bridge name, port)."""


class NotFound(PynetError):
    status = 404


class KernelError(PynetError):
    """The kernel refused a change; the message says which object and why."""


class StateError(PynetError):
    """The state on disk is unreadable (corrupt, truncated, unknown version)."""
