"""A hostile DHCPv4 server for tests/netns/test_ns_dhcp.py, run in the router namespace:

    python dhcp_fake_server.py IFNAME '{"yiaddr": "10.77.0.60", "options": [[51, "00000000"], ...], "nak": false}'

It answers every DISCOVER with an OFFER and every REQUEST with an ACK (or a NAK with "nak": true), both
broadcast, carrying exactly the options given (code, hex value; message type and server id are added
unless given). Written with struct only, independent of pynet and pyroute2. Prints "ready" once bound.
"""

import json
import socket
import struct
import sys

ifname, scenario = sys.argv[1], json.loads(sys.argv[2])
SERVER = scenario.get("server", "10.77.0.1")

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
s.bind(("0.0.0.0", 67))
print("ready", flush=True)

while True:
    data, _ = s.recvfrom(4096)
    if len(data) < 244 or data[0] != 1:
        continue
    xid, chaddr = data[4:8], data[28:44]
    opts, i = {}, 240
    while i + 1 < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        opts[data[i]] = data[i + 2:i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    kind = opts.get(53, b"\0")[0]
    if kind not in (1, 3):
        continue
    reply_type = 2 if kind == 1 else (6 if scenario.get("nak") else 5)
    body = (struct.pack("!BBBB", 2, 1, 6, 0) + xid + b"\0\0\0\0" + b"\0" * 4
            + socket.inet_aton(scenario.get("yiaddr", "10.77.0.60")) + socket.inet_aton(SERVER) + b"\0" * 4
            + chaddr + b"\0" * 192 + b"\x63\x82\x53\x63")
    given = [(int(code), bytes.fromhex(value)) for code, value in scenario.get("options", [])]
    codes = {c for c, _ in given}
    out = b"" if 53 in codes else bytes([53, 1, reply_type])
    if 54 not in codes:
        out += bytes([54, 4]) + socket.inet_aton(SERVER)
    for code, value in given:
        out += bytes([code, len(value)]) + value
    s.sendto(body + out + b"\xff", ("255.255.255.255", 68))
