"""The HTTP layer under a real `pax serve`: request heads are bounded (431, the server's memory
flat), and slow clients are closed at their deadlines (issue 25: four requests with 64 MiB
headers got 200 and added 309 MB; slow headers, slow bodies and silent connections were never
closed). Counts and times are bounded: 20 slow clients, deadlines of 2 s."""

import contextlib
import socket
import time

import psutil
import pytest

from tests.helpers import wait_until

pytestmark = pytest.mark.slow
MB = 2**20


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=30)
    return s


def answer(s: socket.socket) -> bytes:
    """Everything the server says until it closes (or 30 s pass)."""
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


def closed(s: socket.socket) -> bool:
    """Whether the server has closed this connection (a read sees EOF or a reset)."""
    s.setblocking(False)
    try:
        return s.recv(65536) == b""  # (an answer's bytes first: the caller reads them after)
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        s.setblocking(True)


def send_huge_header(url: str, size: int) -> bytes:
    s = connect(url)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
    chunk = b"a" * MB
    try:
        for _ in range(size // MB):
            s.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused and closed mid-send: what should happen
    got = answer(s)
    s.close()
    return got


def test_huge_headers_are_431_and_the_server_stays_small(service_factory):
    svc = service_factory()
    proc = psutil.Process(svc.proc.pid)
    before = proc.memory_info().rss
    for _ in range(4):
        got = send_huge_header(svc.url, 64 * MB)
        assert got.startswith(b"HTTP/1.1 431 "), got[:200]
        assert b"x-content-type-options: nosniff" in got.lower()
    assert proc.memory_info().rss - before < 40 * MB
    assert svc.page("/healthz").status_code == 200  # and it still serves


def test_too_many_header_fields_are_431(service_factory):
    svc = service_factory()
    s = connect(svc.url)
    fields = b"".join(b"X-H%d: 1\r\n" % i for i in range(150))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + fields + b"\r\n")
    got = answer(s)
    assert got.startswith(b"HTTP/1.1 431 "), got[:200]


def test_slow_and_silent_clients_are_closed_at_their_deadlines(service_factory):
    svc = service_factory(PAX_HTTP_HEAD_TIMEOUT_S="2", PAX_HTTP_BODY_TIMEOUT_S="2")
    silent = [connect(svc.url) for _ in range(5)]
    slow_heads = [connect(svc.url) for _ in range(10)]
    slow_bodies = [connect(svc.url) for _ in range(5)]
    for s in slow_heads:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    for s in slow_bodies:
        s.sendall(
            b"POST /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            b"\r\nContent-Length: 1000\r\n\r\n{"
        )
    t0 = time.monotonic()

    def all_closed() -> bool:
        for s in slow_heads:  # a header byte now and then: never a whole head
            with contextlib.suppress(OSError):
                s.send(b"X")
        return all(closed(s) for s in silent + slow_heads + slow_bodies)

    wait_until(all_closed, 30, "every slow client closed", every=0.5)
    assert time.monotonic() - t0 < 25
    assert svc.page("/healthz").status_code == 200


def test_a_slow_head_is_told_408_with_the_security_headers(service_factory):
    svc = service_factory(PAX_HTTP_HEAD_TIMEOUT_S="1")
    s = connect(svc.url)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    got = answer(s)
    assert got.startswith(b"HTTP/1.1 408 ") and b"content-security-policy" in got.lower()


def test_malformed_requests_and_foreign_hosts_get_the_security_headers(service_factory):
    svc = service_factory()
    s = connect(svc.url)
    s.sendall(b"GARBAGE\r\n\r\n")
    got = answer(s)
    assert got.startswith(b"HTTP/1.1 400 ") and b"x-frame-options: deny" in got.lower()
    r = svc.http.get(svc.url + "/healthz", headers={"Host": "evil.example"})
    assert r.status_code == 400 and r.headers["x-content-type-options"] == "nosniff"
