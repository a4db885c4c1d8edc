"""`model-go serve --workers 2` on one PostgreSQL database and one Redis: both workers answer on the
one port, a key's requests-a-minute limit holds across them, SIGTERM to the supervisor drains and
ends every worker (a stream in flight finishes), a worker killed outright is replaced, workers whose
supervisor is killed end on their own; two workers share one SQLite file too; and without Redis,
`--workers 2` is refused with the reason.

Which worker served a request is read from the server's JSON log: each worker's lines carry
`worker` and `pid` fields, and the relay's line names the request id the client got back."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.billing.ledger_checks import ledger_verify
from tests.conftest import add_mock_channel
from tests.support.gateway import (
    Gateway,
    create_pg_database,
    drop_pg_database,
    free_port,
    postgres_available,
)
from tests.support.mock_openai import MockUpstream

REDIS_URL = "redis://127.0.0.1:6379/0"
WORKERS = ("--workers", "2")


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@contextmanager
def workers_gateway(
    data_dir: Path, upstream: MockUpstream, extra_env: dict[str, str] | None = None, *, sqlite: bool = False
) -> Iterator[Gateway]:
    """Started on a database of its own (PostgreSQL unless `sqlite`), with both workers up (the first
    answer to /readyz may come before the second is); stopped and the database dropped afterwards."""
    if not postgres_available() or not redis_available():
        pytest.fail(
            "workers need PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (.ci/run starts both)"
        )
    url = None if sqlite else create_pg_database()
    env = {"MODELGO_REDIS_URL": REDIS_URL, "MODELGO_REDIS_PREFIX": f"test-{uuid.uuid4().hex[:8]}:"}
    env.update(extra_env or {})
    gw = Gateway(data_dir=data_dir, database_url=url, extra_env=env, serve_args=WORKERS)
    try:
        add_mock_channel(gw, upstream, ["gpt-mock", "mock-slow-stream", "mock-silent"])
        gw.start()
        wait_for(lambda: len(startups(gw)) == 2, "both workers to start")
        yield gw
    finally:
        gw.stop()
        if url:
            drop_pg_database(url)


@pytest.fixture(scope="module")
def server(upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    metrics = {"MODELGO_METRICS_PORT": str(two_free_ports())}
    with workers_gateway(tmp_path_factory.mktemp("workers"), upstream, metrics) as gw:
        yield gw


def two_free_ports() -> int:
    """A port that is free, and the one after it too."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two free ports in a row")


def wait_for(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def records(gw: Gateway) -> list[dict[str, Any]]:
    """The JSON log lines (stdout's banner lines, in the same file, are not JSON)."""
    lines = [line for line in gw.output().splitlines() if line.startswith("{")]
    return [orjson.loads(line) for line in lines]


def spawned(gw: Gateway) -> list[tuple[int, int]]:
    """(worker index, pid) of every worker the supervisor started, in order."""
    found = []
    for rec in records(gw):
        if (
            rec["logger"] == "model_go.workers"
            and rec["msg"].endswith(")")
            and " started (pid " in rec["msg"]
        ):
            words = rec["msg"].replace("(", " ").replace(")", " ").split()  # worker N started pid P
            found.append((int(words[1]), int(words[4])))
    return found


def startups(gw: Gateway) -> set[int]:
    """Pids of the workers the supervisor knows are serving."""
    ready = [r["msg"].split() for r in records(gw) if r["logger"] == "model_go.workers"]
    return {int(words[3].rstrip(")")) for words in ready if words[-1] == "ready"}


def alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by whoever inherited it, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def chat(gw: Gateway, secret: str) -> httpx.Response:
    body = {"model": "gpt-mock", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    # a connection of its own each time, so the kernel hands each request to either worker
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def served_by(gw: Gateway, answers: list[httpx.Response]) -> list[int]:
    """Which worker answered each response, from the relay's log line for its request id (request
    lines are written four times a second, so wait for them)."""
    ids = [r.headers["x-request-id"] for r in answers]
    workers: dict[str, int] = {}

    def logged() -> bool:
        for rec in records(gw):
            if rec["logger"] == "model_go.relay" and "request_id" in rec:
                workers[rec["request_id"]] = rec["worker"]
        return all(i in workers for i in ids)

    wait_for(logged, "the request log lines", timeout=10)
    return [workers[i] for i in ids]


def test_both_workers_answer_on_one_port(server: Gateway) -> None:
    assert server.proc is not None
    pids = dict(spawned(server))
    assert sorted(pids) == [1, 2]
    assert children(server.proc.pid) == set(pids.values())  # the supervisor's own, nothing else
    assert startups(server) == set(pids.values())
    _, secret, _ = server.new_user("5")
    answers = [chat(server, secret) for _ in range(30)]
    assert [r.status_code for r in answers] == [200] * 30
    by = served_by(server, answers)
    assert set(by) == {1, 2}, by
    # one metrics port each: MODELGO_METRICS_PORT and the next
    metrics_port = int(server.extra_env["MODELGO_METRICS_PORT"])
    for port in (metrics_port, metrics_port + 1):
        assert "modelgo_requests_total" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
    # each worker's lines carry its own pid
    for rec in records(server):
        if "worker" in rec:
            assert rec["pid"] == pids[rec["worker"]]


def test_requests_a_minute_hold_across_workers(server: Gateway) -> None:
    username, _, _ = server.new_user("5")
    secret = server.cli("key", "add", username, "--rpm", "6").stdout.strip().splitlines()[-1]
    server.wait_key_live(secret, timeout=10)  # (GET /v1/models, which the limit does not count)
    answers = [chat(server, secret) for _ in range(12)]
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) == 6 and statuses.count(429) == 6, statuses
    by = served_by(server, answers)
    assert set(by) == {1, 2}, by  # both workers answered, and the count was one count
    refused = [r for r in answers if r.status_code == 429]
    for resp in refused:
        assert resp.json()["error"]["code"] == "rate_limit_exceeded"
        assert resp.headers["x-ratelimit-limit-requests"] == "6"


def test_sigterm_drains_every_worker_and_a_killed_worker_is_replaced(
    upstream: MockUpstream, tmp_path: Path
) -> None:
    with workers_gateway(tmp_path, upstream) as gw:
        _kill_one_then_drain(gw)


def _kill_one_then_drain(gw: Gateway) -> None:
    assert gw.proc is not None
    first = dict(spawned(gw))
    # a worker that dies once it served is replaced (one that dies before failed to start)
    os.kill(first[1], signal.SIGKILL)
    wait_for(lambda: len(spawned(gw)) == 3, "worker 1 to be replaced")
    replacement = spawned(gw)[-1]
    assert replacement[0] == 1 and replacement[1] != first[1]
    assert any(
        r["msg"] == f"worker 1 (pid {first[1]}) exited with status -9; starting another" for r in records(gw)
    )
    wait_for(lambda: replacement[1] in startups(gw), "the replacement to start")
    assert children(gw.proc.pid) == {first[2], replacement[1]}
    _, secret, _ = gw.new_user("5")
    assert chat(gw, secret).status_code == 200

    # a stream in flight when SIGTERM arrives finishes (20 chunks, 50 ms apart), then all stop
    reader, chunks = slow_stream(gw, secret)
    gw.stop_gracefully()  # exit status 0, and "Application shutdown complete" logged
    reader.join(10)
    assert b"data: [DONE]" in b"".join(chunks)
    for pid in (first[2], replacement[1]):
        assert not alive(pid), f"worker {pid} outlived its supervisor"
    assert sum(r["msg"] == "Application shutdown complete." for r in records(gw)) == 2


def slow_stream(
    gw: Gateway, secret: str, model: str = "mock-slow-stream"
) -> tuple[threading.Thread, list[bytes]]:
    """A streamed answer being read on a thread, once its first bytes came (mock-slow-stream: 20
    chunks 50 ms apart; mock-silent: keep-alive comments until the upstream starts)."""
    chunks: list[bytes] = []
    streaming = threading.Event()

    def stream() -> None:
        body = {
            "model": model,
            "stream": True,
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "x"}],
        }
        with httpx.stream(
            "POST",
            gw.base_url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        ) as resp:
            for chunk in resp.iter_bytes():
                chunks.append(chunk)
                streaming.set()

    reader = threading.Thread(target=stream)
    reader.start()
    assert streaming.wait(10)
    return reader, chunks


def test_workers_drain_and_end_when_their_supervisor_is_killed(
    upstream: MockUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream the upstream answers 3 s after it started, its supervisor killed at once: its worker
    notices within a second and drains, so the stream still ends with [DONE] (cut, it would not),
    then every worker exits. Their log lines go to the standard output they inherited then."""
    monkeypatch.setattr(upstream, "silent_seconds", 3.0)
    with workers_gateway(tmp_path, upstream, {"MODELGO_KEEPALIVE_SECONDS": "0.3"}) as gw:
        pids = [pid for _, pid in spawned(gw)]
        _, secret, user_id = gw.new_user("5")
        reader, chunks = slow_stream(gw, secret, "mock-silent")
        gw.stop(signal.SIGKILL)
        reader.join(20)
        assert b": keep-alive" in b"".join(chunks)  # it was in flight, upstream still silent
        assert b"data: [DONE]" in b"".join(chunks)  # drained, not cut
        wait_for(lambda: not any(alive(pid) for pid in pids), "the orphaned workers to exit", timeout=45)
        gw.wait_for_usage(user_id, 1)
        gone = [r["pid"] for r in records(gw) if r["msg"] == "the supervisor is gone; shutting down"]
        assert sorted(gone) == sorted(pids)
        finished = [r["pid"] for r in records(gw) if r["msg"] == "Application shutdown complete."]
        assert sorted(finished) == sorted(pids)


def test_workers_share_one_sqlite_file(upstream: MockUpstream, tmp_path: Path) -> None:
    """Two processes writing one SQLite file (WAL, busy_timeout) while a command writes to it too:
    no request fails, every one has its usage row, and the ledger verifies."""
    with workers_gateway(tmp_path, upstream, sqlite=True) as gw:
        users = [gw.new_user("5") for _ in range(4)]
        answers: list[httpx.Response] = []

        def load(secret: str) -> None:
            answers.extend(chat(gw, secret) for _ in range(40))

        threads = [threading.Thread(target=load, args=(secret,)) for _, secret, _ in users]
        for thread in threads:
            thread.start()
        for i in range(5):  # the CLI's writes, in the same file at the same time
            gw.cli("credit", "add", users[i % 4][0], "1", "--note", "during the load")
        for thread in threads:
            thread.join(60)
        assert [r.status_code for r in answers] == [200] * 160
        assert set(served_by(gw, answers)) == {1, 2}
        for _, _, user_id in users:
            gw.wait_for_usage(user_id, 40)
        code, report = ledger_verify(gw)
        assert code == 0, report
        assert "database is locked" not in gw.output()


def test_a_worker_that_cannot_start_stops_them_all(tmp_path: Path) -> None:
    """Worker 2's metrics port is taken: it fails at start-up, which a replacement would repeat, so
    the supervisor stops worker 1 too and exits 1 (for systemd or Docker to see)."""
    if not redis_available():
        pytest.fail("workers need Redis on 127.0.0.1:6379")
    port = two_free_ports()
    env = {
        "MODELGO_REDIS_URL": REDIS_URL,
        "MODELGO_REDIS_PREFIX": f"test-{uuid.uuid4().hex[:8]}:",
        "MODELGO_METRICS_PORT": str(port),
    }
    gw = Gateway(data_dir=tmp_path, database_url=None, extra_env=env, serve_args=WORKERS)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 1))
        taken.listen()
        # worker 1 may answer /readyz before the supervisor stops it, or not
        with contextlib.suppress(RuntimeError):
            gw.start(timeout=60)
        assert gw.proc is not None and gw.proc.wait(60) == 1
    pids = dict(spawned(gw))
    assert not any(alive(pid) for pid in pids.values())
    failed = [r["msg"] for r in records(gw) if r["level"] == "ERROR" and r["logger"] == "model_go.workers"]
    assert len(failed) == 1 and failed[0].startswith(f"worker 2 (pid {pids[2]}) exited with status 3 ")
    assert len(spawned(gw)) == 2  # not replaced
    assert failed[0].endswith("before it was ready; stopping the other workers")
    gw.proc = None


def test_workers_without_redis_are_refused_with_the_reason(tmp_path: Path) -> None:
    gw = Gateway(data_dir=tmp_path, database_url=None)
    result = gw.cli("serve", "--workers", "2", check=False, process=True)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "--workers 2 needs MODELGO_REDIS_URL" in message
    assert "without a shared Redis they would overspend" in message
    assert "balance reservations, rate limits, sign-in throttling and channel health" in message
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "model-go.db").exists()  # refused before touching the database
