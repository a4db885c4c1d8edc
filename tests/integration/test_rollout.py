"""Rolling out: `model-go migrate` once, replicas started with `serve --no-migrate` (which refuse a
schema that is not current, with what to do), `--workers` refused with the reason, and a SIGTERM
that lets streams in flight finish within MODELGO_SHUTDOWN_GRACE_SECONDS and cuts them after it,
billing what was sent."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import add_mock_channel, make_gateway
from tests.support.gateway import Gateway, drop_pg_database
from tests.support.mock_openai import MockUpstream


@pytest.fixture
def fresh(backend: str, tmp_path: Path) -> Iterator[Gateway]:
    gw = make_gateway(tmp_path / "gw", backend)
    yield gw
    gw.stop()
    if gw.database_url:
        drop_pg_database(gw.database_url)


def test_migrate_once_then_serve_without_migrating(fresh: Gateway, upstream: MockUpstream) -> None:
    gw = fresh
    gw.extra_env["MODELGO_AUTO_MIGRATE"] = "false"
    # an empty database: a command and the server refuse it and say what to do
    refused = gw.cli("user", "list", check=False)
    assert refused.returncode == 1 and "run `model-go migrate` first" in refused.stderr
    with pytest.raises(RuntimeError, match="server exited early"):
        gw.start(timeout=60)
    assert "run `model-go migrate` first" in gw.output() and "Traceback" not in gw.output()

    first = gw.cli("migrate")
    assert "migrated the database from an empty database to revision" in first.stdout
    assert "the database schema is current" in gw.cli("migrate").stdout
    gw.start()
    assert httpx.get(gw.base_url + "/readyz").json()["status"] == "ready"


def test_more_than_one_worker_is_refused_with_the_reason(fresh: Gateway) -> None:
    result = fresh.cli("serve", "--workers", "2", check=False)
    assert result.returncode == 1 and "would overspend" in result.stderr


def _slow_stream(gw: Gateway, secret: str, chunks: list[bytes], first: threading.Event) -> None:
    body = {
        "model": "mock-slow-stream",
        "stream": True,
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "drain"}],
    }
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST",
            gw.base_url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {secret}"},
        ) as resp,
    ):
        try:
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    chunks.append(line.encode())
                    first.set()
        except httpx.HTTPError:
            pass  # cut by the server
    first.set()


@pytest.mark.parametrize(("grace", "finishes"), [("10", True), ("0.2", False)])
def test_sigterm_drains_streams_within_the_grace(
    fresh: Gateway, upstream: MockUpstream, grace: str, finishes: bool
) -> None:
    gw = fresh
    gw.extra_env["MODELGO_SHUTDOWN_GRACE_SECONDS"] = grace
    add_mock_channel(gw, upstream, ["mock-slow-stream"])
    gw.start()
    _, secret, user_id = gw.new_user("5")
    chunks: list[bytes] = []
    first = threading.Event()
    reader = threading.Thread(target=_slow_stream, args=(gw, secret, chunks, first))
    reader.start()
    assert first.wait(10), "the stream did not start"
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    with pytest.raises(httpx.HTTPError):  # no new connections while draining
        httpx.get(gw.base_url + "/healthz", timeout=2)
    reader.join(30)
    assert gw.proc.wait(30) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in gw.output()
    gw.proc = None

    if finishes:
        assert chunks[-1] == b"data: [DONE]" and len(chunks) > 20
    else:
        assert b"data: [DONE]" not in chunks and len(chunks) < 20

    # the stream's usage row was written at shutdown: billed once, for what was sent
    gw.start()
    rows = gw.wait_for_usage(user_id, 1)
    assert len(rows) == 1
    row = rows[0]
    assert row.completion_tokens > 0 and row.cost_micros > 0
    if finishes:
        assert row.status_code == 200 and row.error_code is None
    else:
        assert row.error_code == "server_shutdown"
