#!/usr/bin/env python3
"""The connection-rate server of `make bench` (stdlib only; runs under /usr/bin/python3).

  connrate.py serve PORT    accept loop: read the request, answer a bare HTTP 200, close with RST
                            (prints "ready")

The load is wrk (bench/loadgen.py), one new TCP connection per request (`Connection: close`); a
request counts only when this answer arrives, so a proxy that accepts before it reaches the
container (docker-proxy) is measured end to end. The listening socket has SO_LINGER 0, which its
accepted sockets inherit: each close is an RST, so no TIME_WAIT piles up on either side and
conntrack forgets the connection after 10 s (not 120). busybox httpd/nc are far too slow for this
(testing.md), hence Python, run by the bench in the container's network namespace (nsenter -n),
pinned to a CPU of its own. A plain blocking loop: the fastest Python accept loop there is (no
event loop between the syscalls); the bench records its CPU, so a sample where it ran out shows.
"""

from __future__ import annotations

import socket
import struct
import sys

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def serve(port: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # inherited: RST on close
    s.bind(("0.0.0.0", port))
    s.listen(4096)
    print("ready", flush=True)
    accept = s.accept
    while True:
        try:
            c, _ = accept()
        except OSError:
            continue
        try:
            c.recv(4096)  # the request: one segment (read, so the RST never races unread data)
            c.send(ANSWER)
        except OSError:
            pass
        c.close()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "serve":
        sys.exit(__doc__)
    serve(int(sys.argv[2]))
