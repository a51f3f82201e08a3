"""Fault injection for crash tests: `PYNET_FAULT=<call>:<step>` makes the daemon SIGKILL itself there.

Each point sits between two effects of a call (kernel, firewall, state), so a
test can check that after a restart the call's effect is either complete or
absent, and that Docker's retry or the user's next command succeeds. Unset
(always, outside tests) it costs one string comparison.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger("pynet.faults")
POINTS = (
    "create_network:kernel", "create_network:firewall", "create_network:saved",
    "delete_network:endpoints", "delete_network:kernel", "delete_network:saved",
    "create_endpoint:kernel", "create_endpoint:firewall", "create_endpoint:saved",
    "delete_endpoint:ports", "delete_endpoint:kernel", "delete_endpoint:saved",
    "join:kernel", "join:saved",
    "program_external:firewall", "program_external:saved",
    "revoke_external:firewall", "revoke_external:saved",
)
_ARMED = os.environ.get("PYNET_FAULT", "")


def point(name: str) -> None:
    if _ARMED and _ARMED == name:
        log.critical("fault injected: SIGKILL", extra={"fields": {"point": name}})
        os.kill(os.getpid(), signal.SIGKILL)
