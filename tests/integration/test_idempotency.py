"""Idempotency-Key: a retry is never run or billed twice, whatever the timing, and survives a restart.
Replies are never stored (privacy policy), so a used key is answered 409 with the original request's
id instead of its content; the same key with another body is 422; a failed, unbilled original frees
its key. Only keyed hashes of the key and the body are kept."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

from tests.support.gateway import Gateway
from tests.support.mock_openai import MockUpstream

BODY = {"model": "gpt-mock", "max_tokens": 5, "messages": [{"role": "user", "content": "once only"}]}


def _post(gw: Gateway, key: str, body: dict[str, Any], idem: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if idem is not None:
        headers["Idempotency-Key"] = idem
    return httpx.post(
        gw.base_url + "/v1/chat/completions", content=orjson.dumps(body), headers=headers, timeout=60
    )


def test_a_retry_is_not_run_or_billed_again(gateway: Gateway, upstream: MockUpstream) -> None:
    _, key, user_id = gateway.new_user("1")
    before = upstream.count("gpt-mock")
    first = _post(gateway, key, BODY, "retry-1")
    assert first.status_code == 200, first.text
    again = _post(gateway, key, BODY, "retry-1")
    assert again.status_code == 409, again.text
    error = again.json()["error"]
    assert error["code"] == "idempotency_key_used" and error["param"] == "Idempotency-Key"
    original = first.headers["x-request-id"]
    assert original in error["message"] and again.headers["x-modelgo-original-request-id"] == original
    assert upstream.count("gpt-mock") - before == 1
    (row,) = gateway.wait_for_usage(user_id, 1)
    assert gateway.balance(user_id) == 1_000_000 - row.cost_micros
    # without the header, or with another key, the same body runs again
    assert _post(gateway, key, BODY, None).status_code == 200
    assert _post(gateway, key, BODY, "retry-2").status_code == 200
    assert upstream.count("gpt-mock") - before == 3


def test_the_same_key_with_another_body_is_refused(gateway: Gateway) -> None:
    _, key, _ = gateway.new_user("1")
    assert _post(gateway, key, BODY, "body-1").status_code == 200
    other = _post(gateway, key, BODY | {"max_tokens": 6}, "body-1")
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_five_concurrent_copies_run_once(gateway: Gateway, upstream: MockUpstream) -> None:
    _, key, user_id = gateway.new_user("1")
    body = BODY | {"model": "mock-slow-stream", "stream": True}
    before = upstream.count("mock-slow-stream")

    async def one(client: httpx.AsyncClient) -> int:
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "burst"}
        resp = await client.post("/v1/chat/completions", content=orjson.dumps(body), headers=headers)
        return resp.status_code

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as client:
            return await asyncio.gather(*(one(client) for _ in range(5)))

    statuses = asyncio.run(burst())
    assert sorted(statuses) == [200, 409, 409, 409, 409], statuses
    assert upstream.count("mock-slow-stream") - before == 1
    assert len(gateway.wait_for_usage(user_id, 1)) == 1


def test_keys_are_per_api_key(gateway: Gateway) -> None:
    _, one_key, _ = gateway.new_user("1")
    _, other_key, _ = gateway.new_user("1")
    assert _post(gateway, one_key, BODY, "shared-name").status_code == 200
    assert _post(gateway, other_key, BODY, "shared-name").status_code == 200


def test_a_failed_unbilled_original_frees_its_key(gateway: Gateway, upstream: MockUpstream) -> None:
    _, key, user_id = gateway.new_user("1")
    failing = BODY | {"model": "mock-400"}
    before = upstream.count("mock-400")
    assert _post(gateway, key, failing, "after-failure").status_code == 400
    assert _post(gateway, key, failing, "after-failure").status_code == 400  # ran again: nothing was billed
    assert upstream.count("mock-400") - before == 2
    assert gateway.balance(user_id) == 1_000_000


@pytest.mark.parametrize("value", [b"", b"x" * 256, "caf\u00e9".encode(), b"tab\there"])
def test_a_malformed_key_is_refused(gateway: Gateway, value: bytes) -> None:
    _, key, _ = gateway.new_user("1")
    resp = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        content=orjson.dumps(BODY),
        headers={b"Authorization": f"Bearer {key}".encode(), b"Idempotency-Key": value},
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "invalid_idempotency_key"


def test_a_used_key_survives_a_restart_and_is_stored_only_hashed(
    gateway: Gateway, upstream: MockUpstream
) -> None:
    _, key, user_id = gateway.new_user("1")
    secret_key_text = "restart-canary-5b1e"
    first = _post(gateway, key, BODY, secret_key_text)
    assert first.status_code == 200
    (row,) = gateway.wait_for_usage(user_id, 1)
    assert row.idempotency_hash and secret_key_text not in row.idempotency_hash
    gateway.stop_gracefully()
    gateway.start()
    before = upstream.count("gpt-mock")
    again = _post(gateway, key, BODY, secret_key_text)
    assert again.status_code == 409, again.text
    assert first.headers["x-request-id"] in again.json()["error"]["message"]
    assert upstream.count("gpt-mock") == before
    if gateway.database_url is None:  # SQLite: the key's text is nowhere in the database file
        for path in gateway.data_dir.glob("*.db*"):
            assert secret_key_text.encode() not in path.read_bytes()
    assert secret_key_text not in gateway.output()
