"""Retention: usage rows past the limit are removed (CLI and the server's own task), physically."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.api.conftest import start_api_gateway, stop_gateway
from tests.support.gateway import Gateway
from tests.support.mock_openai import MockUpstream
from tests.support.smtp import MailBox

AGES = {"old-95": 95, "old-91": 91, "edge-90h": None, "young-89": 89, "fresh-0": 0}


def _insert_rows(gw: Gateway, user_id: int, marker: str) -> dict[str, str]:
    """One usage row per age, each with its own user agent marker. Returns {label: user_agent}."""
    agents = {label: f"{label}-{marker}" for label in AGES}

    async def work(conn: Any, _k: Any) -> None:
        from model_go.storage.tables import usage_logs, utcnow

        now = utcnow()
        for label, days in AGES.items():
            age = timedelta(days=90, hours=-1) if days is None else timedelta(days=days)
            await conn.execute(
                usage_logs.insert().values(
                    request_id="req_" + uuid.uuid4().hex[:24],
                    user_id=user_id,
                    key_id=None,
                    endpoint="chat",
                    model="gpt-mock",
                    channel_id=None,
                    stream=False,
                    prompt_tokens=1,
                    completion_tokens=1,
                    cached_tokens=0,
                    usage_estimated=False,
                    cost_micros=3,
                    status_code=200,
                    error_code=None,
                    attempts=1,
                    latency_ms=1,
                    ttft_ms=None,
                    client_ip="192.0.2.55",
                    user_agent=agents[label],
                    created_at=now - age,
                )
            )

    gw.db(work)
    return agents


def _agents_left(gw: Gateway, user_id: int) -> set[str]:
    async def work(conn: Any, _k: Any) -> set[str]:
        from sqlalchemy import select

        from model_go.storage.tables import usage_logs

        rows = await conn.execute(select(usage_logs.c.user_agent).where(usage_logs.c.user_id == user_id))
        return {r.user_agent for r in rows}

    return gw.db(work)


def _raw(gw: Gateway) -> bytes:
    return b"".join(f.read_bytes() for f in sorted(gw.data_dir.glob("model-go.db*")))


def test_cli_removes_exactly_the_rows_past_the_limit(api_gw: Gateway, backend: str) -> None:
    _, _, user_id = api_gw.new_user("0")
    marker = uuid.uuid4().hex
    agents = _insert_rows(api_gw, user_id, marker)
    result = api_gw.cli("retention", "run")
    assert "removed 2 usage rows older than 90 days" in result.stdout
    assert _agents_left(api_gw, user_id) == {agents["edge-90h"], agents["young-89"], agents["fresh-0"]}
    if backend == "sqlite":
        raw = _raw(api_gw)
        for label in ("old-95", "old-91"):
            assert agents[label].encode() not in raw, f"{label} left bytes in the SQLite files"
        assert agents["fresh-0"].encode() in raw  # the grep itself works
    again = api_gw.cli("retention", "run")
    assert "removed 0 usage rows" in again.stdout


@pytest.fixture
def daily_gw(
    backend: str, upstream: MockUpstream, mailbox: MailBox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gw = start_api_gateway(
        tmp_path_factory.mktemp(f"retain-{backend}"),
        backend,
        upstream,
        mailbox,
        MODELGO_USAGE_RETENTION_DAYS="30",
        MODELGO_RETENTION_INTERVAL_SECONDS="0.5",
    )
    yield gw
    stop_gateway(gw)


def test_the_server_purges_on_its_own(daily_gw: Gateway, backend: str) -> None:
    _, _, user_id = daily_gw.new_user("0")
    agents = _insert_rows(daily_gw, user_id, uuid.uuid4().hex)
    deadline = time.monotonic() + 10
    expected = {agents["fresh-0"]}  # the limit is 30 days here
    while _agents_left(daily_gw, user_id) != expected:
        assert time.monotonic() < deadline, _agents_left(daily_gw, user_id)
        time.sleep(0.2)
    if backend == "sqlite":
        time.sleep(1.0)  # the checkpoint follows the delete
        raw = _raw(daily_gw)
        assert not any(agents[k].encode() in raw for k in ("old-95", "old-91", "edge-90h", "young-89"))


def test_retention_over_90_days_is_refused(tmp_path: Any) -> None:
    gw = Gateway(data_dir=tmp_path, database_url=None, extra_env={"MODELGO_USAGE_RETENTION_DAYS": "91"})
    result = gw.cli("retention", "run", check=False)
    assert result.returncode != 0 and "90" in (result.stdout + result.stderr)
    with pytest.raises(RuntimeError, match="90"):
        gw.start()  # returns as soon as the server exits; a loaded machine may take > 20 s to start Python
    gw.stop()
