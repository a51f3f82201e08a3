"""Known amounts of TCP traffic, for the metrics tests.

  python3 byte_count.py serve PORT REPLY_BYTES SECONDS   prints "listening"; per connection: reads until
                                                         the client shuts its side, then sends REPLY_BYTES
  python3 byte_count.py send HOST PORT SEND_BYTES        sends SEND_BYTES, shuts its side, prints
                                                         "sent N received M" and exits 0

The server stops by itself after SECONDS, so a failed test never leaves it running.
"""

import socket
import sys
import threading


def serve(port: int, reply: int, lifetime: float) -> None:
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind(("::", port))
    srv.listen(16)
    threading.Timer(lifetime, lambda: __import__("os")._exit(0)).start()
    print("listening", flush=True)
    while True:
        conn, _peer = srv.accept()
        with conn:
            conn.settimeout(10)
            try:
                while conn.recv(65536):
                    pass
                conn.sendall(b"r" * reply)
            except OSError:
                pass


def send(host: str, port: int, amount: int) -> None:
    with socket.create_connection((host, port), timeout=10) as c:
        c.sendall(b"s" * amount)
        c.shutdown(socket.SHUT_WR)
        got = 0
        while chunk := c.recv(65536):
            got += len(chunk)
    print(f"sent {amount} received {got}")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
