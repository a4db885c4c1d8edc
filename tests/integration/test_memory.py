"""The serving process holds only what serving needs. `model-go serve` parses its command line, migrates
the database, then execs the server (server.py): after a first start and a few hundred /v1 requests,
the server has imported none of the CLI's modules, nor Alembic's, nor the SDKs and libraries that
serve other paths, and its resident memory stays under a ceiling well above what was measured here
(~101 MiB after a first start and 200 requests; 120 MiB before the exec, when the server kept the
CLI's and Alembic's modules; `make memory` measures it in detail)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import add_mock_channel
from tests.support.gateway import Gateway, free_port
from tests.support.importtime import imported_modules, interpreters
from tests.support.mock_openai import MockUpstream

# Packages the server must not import on a SQLite start that serves /v1 (each one a cost in memory
# and start-up time paid by every replica): the CLI's, the migrations' (run by the CLI before the
# exec), the test clients', the payment SDK and the dashboard's templates (imported at first use), and
# the PostgreSQL and Redis clients and prometheus-client (imported only when configured), the SMTP
# client (at the first mail). All are installed here, so a name in the trace is a module imported.
NOT_IN_SERVER = (
    "typer",
    "rich",
    "model_go.cli",
    "alembic",
    "mako",
    "httpx",
    "openai",
    "anthropic",
    "google",
    "stripe",
    "jinja2",
    "asyncpg",
    "redis",
    "prometheus_client",
    "aiosmtplib",
)
RSS_CEILING_KIB = 115 * 1024
REQUESTS = 200


@pytest.fixture(scope="module")
def served(upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, int]]:
    """A server on a fresh SQLite database (its first start migrates it) with the import trace on, after
    REQUESTS chat completions (one in four streamed): the gateway, stopped, and its VmRSS in KiB."""
    gw = Gateway(tmp_path_factory.mktemp("memory"), None, extra_env={"PYTHONPROFILEIMPORTTIME": "1"})
    gw.start()
    assert gw.proc is not None
    add_mock_channel(gw, upstream, models=["gpt-mock"])
    gw.wait_config_live()
    _, key, _ = gw.new_user("100")
    with httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        for i in range(REQUESTS):
            body = {"model": "gpt-mock", "messages": [{"role": "user", "content": f"hi {i}"}]}
            reply = http.post("/v1/chat/completions", json={**body, "stream": i % 4 == 0})
            assert reply.status_code == 200, reply.text
    status = Path(f"/proc/{gw.proc.pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    gw.stop_gracefully()
    yield gw, rss


def test_serve_execs_a_server_that_imports_only_what_serving_needs(served: tuple[Gateway, int]) -> None:
    gw, _ = served
    log = gw.output()
    assert interpreters(log) == 2, "`model-go serve` should exec the server once"
    modules = imported_modules(log)
    assert "model_go.relay.pipeline" in modules and "uvicorn" in modules  # the trace is the server's
    found = sorted({m for m in modules for p in NOT_IN_SERVER if m == p or m.startswith(p + ".")})
    assert not found, f"the server imported {found}"


def test_server_memory_after_warm_up_stays_under_the_ceiling(served: tuple[Gateway, int]) -> None:
    _, rss = served
    assert rss < RSS_CEILING_KIB, f"VmRSS {rss / 1024:.1f} MiB after {REQUESTS} requests"


def test_command_line_options_reach_the_server(tmp_path: Path) -> None:
    """The exec'd server reads its settings from the environment: `--port` must still win over
    MODELGO_PORT, as it does in Settings, and `--no-migrate` must still be accepted on a current schema."""
    gw = Gateway(tmp_path, None, extra_env={"MODELGO_PORT": str(free_port())})
    gw.cli("migrate")
    log = gw.log_path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "model_go", "serve", "--port", str(gw.port), "--no-migrate"],
        env=gw.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    gw.proc = proc
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(gw.base_url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert httpx.get(gw.base_url + "/readyz", timeout=5).json()["status"] == "ready", gw.output()
        gw.stop_gracefully()
    finally:
        gw.stop()
        log.close()
