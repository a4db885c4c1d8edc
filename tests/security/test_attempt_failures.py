"""Class 4 of issue 9: an unexpected error inside one upstream attempt (here: a stored channel key
with a trailing newline, which the HTTP client refuses to put in a header) is an attempt failure:
the relay fails over, and the usage row records what the client got. And such keys are refused
where channels are configured (the shared service, so the CLI, the API and the dashboard)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.errors import InvalidRequest
from model_go.security import KeyRing
from model_go.services import channels
from model_go.storage import repo
from tests.conftest import UPSTREAM_KEY, make_gateway
from tests.support.gateway import Gateway
from tests.support.mock_openai import MockUpstream


async def _channels(conn: AsyncConnection, keyring: KeyRing, base_url: str) -> None:
    # written past the service, as an older version (or a direct edit) could have stored it
    common: dict[str, Any] = {
        "provider": "openai",
        "base_url": base_url,
        "model_map": {},
        "weight": 1,
        "config": {},
    }
    await repo.add_channel(
        conn, keyring, name="broken", models=["gpt-mock", "text-embed-mock"], priority=10,
        api_key=UPSTREAM_KEY + "\n", **common,
    )  # fmt: skip
    await repo.add_channel(
        conn, keyring, name="good", models=["gpt-mock"], priority=0, api_key=UPSTREAM_KEY, **common
    )
    for model in ("gpt-mock", "text-embed-mock"):
        await repo.set_price(conn, model, input_per_1m=1, output_per_1m=1, cached_input_per_1m=1)


@pytest.fixture(scope="module")
def gw(upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = make_gateway(tmp_path_factory.mktemp("attempts"), "sqlite", MODELGO_DEMO="false")
    gateway.db(lambda conn, keyring: _channels(conn, keyring, upstream.base_url))
    gateway.start()
    yield gateway
    gateway.stop()


def _post(gw: Gateway, key: str, path: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(gw.base_url + path, json=body, headers={"authorization": f"Bearer {key}"}, timeout=30)


def test_a_broken_attempt_fails_over_to_the_next_channel(gw: Gateway) -> None:
    _, key, user_id = gw.new_user("10")
    body = {"model": "gpt-mock", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    resp = _post(gw, key, "/v1/chat/completions", body)
    assert resp.status_code == 200, resp.text
    (row,) = gw.wait_for_usage(user_id, 1)
    assert row.status_code == 200 and row.attempts == 2


def test_the_usage_row_records_what_the_client_got(gw: Gateway) -> None:
    _, key, user_id = gw.new_user("10")
    resp = _post(gw, key, "/v1/embeddings", {"model": "text-embed-mock", "input": "hi"})
    assert resp.status_code == 502, resp.text
    assert resp.json()["error"]["code"] == "upstream_request_failed"
    assert UPSTREAM_KEY not in resp.text
    (row,) = gw.wait_for_usage(user_id, 1)
    assert row.status_code == 502 and row.error_code == "upstream_request_failed"
    assert UPSTREAM_KEY not in gw.output()


@pytest.mark.parametrize("bad", ["sk-key\n", "sk-key\r\nX-Evil: 1", " sk-key", "sk-\x00key", "sk-key\x7f"])
def test_header_bound_settings_are_validated_by_the_service(gw: Gateway, bad: str) -> None:
    async def edit(conn: AsyncConnection, keyring: KeyRing) -> None:
        row = await channels.row_by_name(conn, "good")
        await channels.edit(conn, keyring, row.id, channels.ChannelChanges(api_key=bad))

    with pytest.raises(InvalidRequest) as caught:
        gw.db(edit)
    assert caught.value.param == "api_key" and "control characters" in caught.value.message

    async def add(conn: AsyncConnection, keyring: KeyRing) -> None:
        await channels.add(conn, keyring, name="x", provider="openai", models=["m"], api_key=bad)

    with pytest.raises(InvalidRequest):
        gw.db(add)


def test_priority_beyond_int64_is_refused_by_the_service(gw: Gateway) -> None:
    async def add(conn: AsyncConnection, keyring: KeyRing) -> None:
        await channels.add(
            conn, keyring, name="y", provider="openai", models=["m"], api_key="k", priority=2**70
        )

    with pytest.raises(InvalidRequest) as caught:
        gw.db(add)
    assert caught.value.param == "priority"


def test_channel_test_reports_a_broken_key_instead_of_failing(gw: Gateway) -> None:
    result = gw.cli("channel", "test", "broken", check=False)
    assert result.returncode != 0 or "upstream_request_failed" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert UPSTREAM_KEY not in result.stdout + result.stderr
