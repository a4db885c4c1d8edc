"""Server-wide limits against raw-socket clients: body size, head size, slow clients, the connection cap."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.conftest import make_gateway
from tests.support.gateway import Gateway

MB = 1024 * 1024
DEADLINE = 1.5  # the head and body read deadlines these servers run with


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = make_gateway(
        tmp_path_factory.mktemp("limits"),
        "sqlite",
        MODELGO_DEMO="false",
        MODELGO_HEADER_READ_TIMEOUT_SECONDS=str(DEADLINE),
        MODELGO_BODY_READ_TIMEOUT_SECONDS=str(DEADLINE),
    ).start()
    yield gateway
    gateway.stop()


def connect(gw: Gateway, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=timeout)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response head: {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def rss_kib(gw: Gateway) -> int:
    assert gw.proc is not None
    for line in Path(f"/proc/{gw.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server ends the connection (EOF or reset, after any answer) within `within` s."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def assert_error_shape(body: bytes, code: str) -> None:
    error = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code


def test_declared_100mb_body_is_refused_before_it_is_read(gw: Gateway) -> None:
    before = rss_kib(gw)
    for _ in range(4):
        with connect(gw) as sock:
            sock.sendall(
                b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (100 * MB)
            )
            status, headers, body = read_response(sock)  # answered without sending one body byte
            assert status == 413
            assert headers["connection"] == "close"
            assert_error_shape(body, "payload_too_large")
            sent = 0
            with pytest.raises(OSError):  # the server hung up: the rest of the body goes nowhere
                while sent < 100 * MB:
                    sock.sendall(b"x" * MB)
                    sent += MB
            assert sent < 100 * MB
    grown = rss_kib(gw) - before
    assert grown < 8 * 1024, f"the server grew by {grown} KiB"


def test_chunked_body_past_the_limit_is_refused(gw: Gateway) -> None:
    with connect(gw) as sock:
        sock.sendall(
            b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
        try:
            for _ in range(60 * 16):  # 60 MB, if the server kept reading
                sock.sendall(chunk)
        except OSError:
            pass  # refused part-way: what the test wants
        status, _, body = read_response(sock)
        assert status == 413
        assert_error_shape(body, "payload_too_large")


def test_a_small_body_still_works(gw: Gateway) -> None:
    with connect(gw) as sock:
        payload = b'{"login": "nobody", "password": "wrong password here"}'
        sock.sendall(
            b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
        )
        status, _, _ = read_response(sock)
        assert status == 401


def test_a_head_over_the_limit_is_answered_431(gw: Gateway) -> None:
    with connect(gw) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        status, _, body = read_response(sock)
        assert status == 431
        assert_error_shape(body, "headers_too_large")


def test_an_8mb_header_is_cut_off_early(gw: Gateway) -> None:
    """The server answers 431 and closes once the head passes the limit; the client sending the rest
    then sees the connection reset (the 431 may be lost in the reset). Either way it is never read."""
    before = rss_kib(gw)
    with connect(gw) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 8 * MB:
                sock.sendall(b"a" * 256 * 1024)
                sent += 256 * 1024
            sock.sendall(b"\r\n\r\n")
            status, _, _ = read_response(sock)
        except OSError:
            status = None
        assert status in (None, 431)
        assert sent < 8 * MB
    assert rss_kib(gw) - before < 8 * 1024


def test_a_client_that_sends_nothing_is_dropped(gw: Gateway) -> None:
    with connect(gw) as sock:
        assert closed_by_server(sock, DEADLINE + 3)


def test_a_slow_head_is_dropped_after_the_deadline(gw: Gateway) -> None:
    socks = [connect(gw) for _ in range(5)]
    try:
        start = time.monotonic()
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        closed: set[int] = set()
        while time.monotonic() - start < DEADLINE + 4 and len(closed) < len(socks):
            for i, sock in enumerate(socks):
                if i in closed:
                    continue
                try:
                    sock.sendall(b"X: y\r\n")  # a header line every 0.2 s, never the blank line
                    sock.settimeout(0.01)
                    if sock.recv(65536) == b"":
                        closed.add(i)
                except TimeoutError:
                    pass
                except OSError:
                    closed.add(i)
            time.sleep(0.2)
        assert len(closed) == len(socks), "slow heads were still held after the deadline"
        assert time.monotonic() - start > DEADLINE - 0.5
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("path", ["/api/auth/login", "/v1/chat/completions"])
def test_a_slow_body_is_dropped_after_the_deadline(gw: Gateway, path: str) -> None:
    """Whether or not the route answered early (the relay refuses a bad key before reading), the
    connection is closed once the body has not arrived by the deadline."""
    with connect(gw) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer sk-not-a-key\r\nContent-Length: 1000\r\n\r\n{" % path.encode()
        )
        start = time.monotonic()
        closed = False
        sock.settimeout(0.2)
        while not closed and time.monotonic() - start < DEADLINE + 4:
            try:
                sock.sendall(b" ")
                closed = sock.recv(65536) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
        assert closed, "a drip-fed body was still being read after the deadline"
        assert time.monotonic() - start > DEADLINE - 0.5


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = make_gateway(
        tmp_path_factory.mktemp("capped"), "sqlite", MODELGO_DEMO="false", MODELGO_MAX_CONNECTIONS="4"
    ).start()
    yield gateway
    gateway.stop()


def get_healthz(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    return read_response(sock)


def test_connections_over_the_cap_get_a_clear_503(capped: Gateway) -> None:
    held = [connect(capped) for _ in range(4)]
    try:
        for sock in held:
            assert get_healthz(sock)[0] == 200  # keep-alive: each stays open and counted
        with connect(capped) as extra:
            status, headers, body = get_healthz(extra)
            assert status == 503
            assert headers["retry-after"] == "1"
            assert_error_shape(body, "server_busy")
        held.pop().close()
        time.sleep(0.3)
        with connect(capped) as again:
            assert get_healthz(again)[0] == 200
    finally:
        for sock in held:
            sock.close()
