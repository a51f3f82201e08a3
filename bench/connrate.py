#!/usr/bin/env python3
"""New-TCP-connection rate, for `make bench` (stdlib only; runs under /usr/bin/python3).

  connrate.py serve PORT            accept loop: send one byte, close (prints "ready")
  connrate.py client HOST PORT SECS connect, read the byte, close with RST, for SECS seconds;
                                    prints {"ok": N, "errors": N, "rate": N/s, "first_error": ...}

A connect counts only when the server's byte arrives, so a proxy that accepts
before it reaches the container (docker-proxy) is measured end to end. The
client closes with SO_LINGER 0 (RST), so no TIME_WAIT piles up on its ports.
busybox httpd/nc are far too slow for this (testing.md), hence Python, run
by the bench in the container's network namespace (nsenter -n).
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time


def serve(port: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(4096)
    print("ready", flush=True)
    while True:
        try:
            c, _ = s.accept()
        except OSError:
            continue
        try:
            c.send(b"1")
        except OSError:
            pass
        c.close()


def client(host: str, port: int, seconds: float) -> None:
    linger = struct.pack("ii", 1, 0)
    ok = errors = 0
    first_error = None
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2.0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        try:
            s.connect((host, port))
            if s.recv(1) == b"1":
                ok += 1
            else:
                errors += 1
                first_error = first_error or "connection closed without the server's byte"
        except OSError as e:
            errors += 1
            first_error = first_error or f"{e.__class__.__name__}: {e}"
        finally:
            s.close()
    elapsed = time.monotonic() - start
    print(json.dumps({"ok": ok, "errors": errors, "seconds": round(elapsed, 3),
                      "rate": round(ok / elapsed, 1), "first_error": first_error}))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        client(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
