"""Prompts, replies and secrets never reach the database, its WAL or the server's output."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import MetaData, select
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.security import KeyRing
from tests.conftest import UPSTREAM_KEY, add_mock_channel, make_gateway
from tests.support.gateway import Gateway, drop_pg_database
from tests.support.mock_openai import MockUpstream


@pytest.fixture
def fresh_gateway(backend: str, upstream: MockUpstream, tmp_path: Path) -> Iterator[Gateway]:
    gw = make_gateway(
        tmp_path / "gw", backend, MODELGO_MAX_BODY_BYTES="65536", MODELGO_USAGE_FLUSH_SECONDS="1"
    )
    add_mock_channel(gw, upstream, ["gpt-mock", "mock-500", "mock-drop", "mock-slow-stream"])
    gw.start()
    yield gw
    gw.stop()
    if gw.database_url:
        drop_pg_database(gw.database_url)


def database_text(gw: Gateway) -> bytes:
    """Every byte the database holds: the raw files on SQLite, every row of every table on PostgreSQL."""
    if gw.database_url is None:
        files = [p for p in gw.data_dir.iterdir() if p.name.startswith("model-go.db")]
        assert files
        return b"".join(p.read_bytes() for p in files)

    async def dump(conn: AsyncConnection, _k: KeyRing) -> bytes:
        meta = MetaData()
        await conn.run_sync(meta.reflect)
        out: list[str] = []
        for table in meta.sorted_tables:
            out.extend(repr(tuple(row)) for row in await conn.execute(select(table)))
        return "\n".join(out).encode()

    return gw.db(dump)


def test_canary_never_persisted_or_logged(fresh_gateway: Gateway) -> None:
    gw = fresh_gateway
    canary = "CANARY-" + uuid.uuid4().hex
    _, key, user_id = gw.new_user("10")
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)
    msg: list[ChatCompletionMessageParam] = [{"role": "user", "content": f"secret {canary}"}]

    reply = client.chat.completions.create(model="gpt-mock", messages=msg)
    assert canary in (reply.choices[0].message.content or "")  # the mock echoes it back
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="gpt-mock", messages=msg, stream=True)
        if c.choices
    )
    assert canary in streamed
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="mock-500", messages=msg)
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="mock-drop", messages=msg, stream=True):
            pass
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=canary, messages=msg)
    # the Responses route: its refusals, and an OpenAI channel without /responses (an upstream 404)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-mock", input=f"secret {canary}", background=True)
    with pytest.raises(openai.APIStatusError):
        client.responses.create(model="gpt-mock", input=f"secret {canary}", metadata={"note": canary})
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for raw in (
        f'{{"model": "gpt-mock", "messages": [{canary}'.encode(),
        f'{{"model": "gpt-mock", "api_base": "{canary}", "messages": []}}'.encode(),
        f'{{"model": "gpt-mock", "messages": [{{"role": "user", "content": "{canary * 2000}"}}]}}'.encode(),
    ):
        assert httpx.post(gw.base_url + "/v1/chat/completions", content=raw, headers=headers).status_code in (
            400,
            413,
        )
    with httpx.stream(
        "POST",
        gw.base_url + "/v1/chat/completions",
        headers=headers,
        json={"model": "mock-slow-stream", "stream": True, "messages": msg},
    ) as resp:
        next(resp.iter_lines())  # then hang up mid-stream
    gw.wait_for_usage(user_id, 6)
    gw.stop_gracefully()

    stored = database_text(gw)
    output = gw.output().encode()
    assert len(stored) > 0 and b"mock-500" in stored  # the scan does see the usage rows
    for secret in (canary, key, UPSTREAM_KEY):
        assert secret.encode() not in stored, f"{secret[:12]}... found in the database"
        assert secret.encode() not in output, f"{secret[:12]}... found in the server output"
    assert key[:12].encode() in stored  # only the display prefix is kept


def test_sigterm_loses_no_usage_rows(fresh_gateway: Gateway) -> None:
    gw = fresh_gateway
    _, key, user_id = gw.new_user("10")
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)
    for _ in range(60):
        client.chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": "x"}])
    gw.stop_gracefully()  # well inside the 1 s flush interval
    rows = gw.wait_for_usage(user_id, 60, timeout=1)
    assert len(rows) == 60
    assert gw.balance(user_id) == 10_000_000 - sum(r.cost_micros for r in rows)


def test_keys_are_stored_hashed_and_encrypted(fresh_gateway: Gateway) -> None:
    gw = fresh_gateway
    _, key, _ = gw.new_user("1")

    async def rows(conn, _k):  # type: ignore[no-untyped-def]
        from model_go.storage.tables import api_keys, channels

        keys = (await conn.execute(select(api_keys.c.key_hash, api_keys.c.prefix))).all()
        chans = (await conn.execute(select(channels.c.api_key_enc))).all()
        return keys, chans

    keys, chans = gw.db(rows)
    assert all(len(h) == 64 and key not in h for h, _ in keys)
    assert all(p.startswith("sk-mg-") and len(p) <= 12 for _, p in keys)
    assert all(enc is None or (enc.startswith("v1:") and UPSTREAM_KEY not in enc) for (enc,) in chans)
