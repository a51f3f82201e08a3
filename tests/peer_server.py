"""Tiny server that answers each request with the client's address.

Run inside a test namespace: python3 peer_server.py PORT SECONDS. TCP (as an
HTTP/1.0 server) and UDP (one datagram back per datagram) on the same port,
dual-stack; stops by itself after SECONDS so a failed test never leaves it running.
"""

import socket
import sys
import threading


def main() -> None:
    port, lifetime = int(sys.argv[1]), float(sys.argv[2])
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind(("::", port))
    srv.listen(64)
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    udp.bind(("::", port))
    threading.Thread(target=serve_udp, args=(udp,), daemon=True).start()
    threading.Timer(lifetime, lambda: __import__("os")._exit(0)).start()
    print("listening", flush=True)
    while True:
        conn, peer = srv.accept()
        with conn:
            conn.settimeout(2)
            try:
                conn.recv(4096)
            except OSError:
                pass
            host = peer[0].removeprefix("::ffff:")
            conn.sendall(f"HTTP/1.0 200 OK\r\nContent-Length: {len(host) + 1}\r\n\r\n{host}\n".encode())


def serve_udp(udp: socket.socket) -> None:
    while True:
        _data, peer = udp.recvfrom(2048)
        udp.sendto(peer[0].removeprefix("::ffff:").encode() + b"\n", peer)


if __name__ == "__main__":
    main()
