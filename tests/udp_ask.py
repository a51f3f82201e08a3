"""UDP client for tests: python3 udp_ask.py HOST PORT -> prints the reply (the peer address seen)."""

import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.settimeout(3)
for _ in range(3):
    s.sendto(b"who am i", (host, port))
    try:
        print(s.recv(2048).decode().strip())
        break
    except socket.timeout:
        continue
else:
    sys.exit("no answer")
