"""The CLI's Docker socket: the default, or DOCKER_HOST=unix://PATH as the docker CLI reads it."""

from __future__ import annotations

import json
import socket
import threading

from pynet import client


def test_docker_socket_default_and_docker_host(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert client.docker_socket() == "/var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/pynet-engine/docker28.sock")
    assert client.docker_socket() == "/run/pynet-engine/docker28.sock"
    for other in ("tcp://10.0.0.1:2375", "ssh://host", ""):
        monkeypatch.setenv("DOCKER_HOST", other)
        assert client.docker_socket() == "/var/run/docker.sock", other


def test_network_names_asked_on_docker_host(monkeypatch, tmp_path):
    """A fake Docker on another socket answers GET /v1.41/networks; the CLI's names come from it."""
    path = str(tmp_path / "docker.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    seen = []

    def serve():
        conn, _ = srv.accept()
        seen.append(conn.recv(65536).split(b"\r\n")[0])
        body = json.dumps([{"Id": "abc", "Name": "mynet"}]).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    try:
        assert client.docker_network_names() == {"abc": "mynet"}
    finally:
        t.join(5)
        srv.close()
    assert seen == [b"GET /v1.41/networks HTTP/1.1"]
