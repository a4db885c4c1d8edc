"""A fresh install: the first start prints a demo key that works against the built-in demo model."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import make_gateway
from tests.support.gateway import Gateway, drop_pg_database


@pytest.fixture
def fresh(backend: str, tmp_path: Path) -> Iterator[Gateway]:
    gw = make_gateway(tmp_path / "fresh", backend)
    gw.start()
    yield gw
    gw.stop()
    if gw.database_url:
        drop_pg_database(gw.database_url)


def test_first_start_prints_a_working_demo_key(fresh: Gateway) -> None:
    keys = re.findall(r"^(sk-mg-\S+)$", fresh.output(), re.MULTILINE)
    assert len(keys) == 1, fresh.output()
    key = keys[0]
    client = openai.OpenAI(base_url=fresh.base_url + "/v1", api_key=key, max_retries=0)
    assert [m.id for m in client.models.list()] == ["demo"]
    reply = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hello!"}])
    assert reply.choices[0].message.content.startswith("Hello from model-go!")  # type: ignore[union-attr]
    usage = reply.usage
    assert usage is not None and usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="demo",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Hello!"}],
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == usage.completion_tokens
    # demo price: $1 / 1M input, $2 / 1M output -> exactly prompt + 2 x completion micro-dollars, twice
    expected = 2 * (usage.prompt_tokens + 2 * usage.completion_tokens)
    import time

    time.sleep(1.2)
    assert fresh.cli("balance", "demo").stdout.strip() == f"{(5_000_000 - expected) / 1e6:.6f}"
    embedding = client.embeddings.create(model="demo", input="hello")
    assert len(embedding.data[0].embedding) == 16


def test_restart_does_not_create_a_second_demo(fresh: Gateway) -> None:
    fresh.stop_gracefully()
    fresh.start()
    assert len(re.findall(r"^sk-mg-", fresh.output(), re.MULTILINE)) == 1
    assert httpx.get(fresh.base_url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(fresh.base_url + "/readyz").json()["status"] == "ready"
