"""Writes to /proc/sys with a message that says what to do when they fail.

A managed plugin sees /proc/sys read-only unless configured otherwise.
"""

from ..errors import KernelError


def read(path: str) -> str:
    with open(path) as fh:
        return fh.read().strip()


def ensure(path: str, value: str) -> None:
    try:
        if read(path) == value:
            return
        with open(path, "w") as fh:
            fh.write(value)
    except OSError as e:
        key = path.removeprefix("/proc/sys/").replace("/", ".")
        raise KernelError(
            f"cannot set {key}={value} ({e.strerror}); set it on the host (sysctl -w {key}={value}) and retry"
        ) from None
