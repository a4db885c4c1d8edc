"""Rate limits over the real server, through the official SDKs: requests, tokens and concurrent
requests per key and per user; tiers and overrides; 429 in the API's own shape with Retry-After and
OpenAI's x-ratelimit-* headers (on 200s, streamed or not, and on 429s); every concurrency slot back
after 200 streams hung up mid-stream; X-Forwarded-For believed from a trusted proxy only (usage
rows, the per-address login throttle); the CLI and the admin API.

The gateway's defaults (MODELGO_DEFAULT_RPM=3) are every user's limits unless a tier or the user's
own say otherwise; tests needing more requests put their user in the "roomy" tier."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from typing import Any

import anthropic
import httpx
import openai
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.security import KeyRing
from model_go.services import keys, limits
from model_go.storage import repo
from tests.conftest import add_mock_channel, make_gateway
from tests.support.gateway import Gateway, drop_pg_database
from tests.support.mock_openai import MockUpstream

RPM = 3
ROOMY = limits.LimitChange(rpm=100_000)  # the tier of users whose tests need many requests
SIX = [
    f"x-ratelimit-{what}-{kind}"
    for kind in ("requests", "tokens")
    for what in ("limit", "remaining", "reset")
]
HI: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def limited(
    backend: str, upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gw = make_gateway(
        tmp_path_factory.mktemp(f"rpm-{backend}"),
        backend,
        MODELGO_DEFAULT_RPM=str(RPM),
        MODELGO_TRUSTED_PROXIES="127.0.0.1/32",
        MODELGO_LOGIN_MAX_FAILURES_PER_IP="3",
    )
    add_mock_channel(gw, upstream)

    async def tier(conn: AsyncConnection, _k: KeyRing) -> None:
        await limits.set_tier(conn, "roomy", ROOMY)

    gw.db(tier)
    gw.start()
    yield gw
    gw.stop()
    if gw.database_url:
        drop_pg_database(gw.database_url)


def limited_user(
    gw: Gateway,
    *key_limits: limits.LimitChange,
    tier: str = "roomy",
    own: limits.LimitChange = limits.NO_CHANGE,
) -> tuple[int, list[keys.CreatedKey]]:
    """A user with $1000, in `tier`, with their `own` limits and one key per `key_limits`, all in
    one transaction; returns once the server knows them."""
    _, _, user_id = gw.new_user("1000")

    async def work(conn: AsyncConnection, keyring: KeyRing) -> list[keys.CreatedKey]:
        await limits.set_user_tier(conn, tier, user_id=user_id)
        if not own.empty:
            await limits.set_user_limits(conn, own, user_id=user_id)
        return [await keys.create(conn, keyring, user_id, limits=change) for change in key_limits]

    created = gw.db(work)
    gw.wait_key_live(created[-1].secret)
    return user_id, created


def client(gw: Gateway, key: keys.CreatedKey) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key.secret, max_retries=0)


def chat(gw: Gateway, key: keys.CreatedKey, **kwargs: Any) -> Mapping[str, str]:
    raw = client(gw, key).chat.completions.with_raw_response.create(
        model="gpt-mock", messages=HI, **{"max_tokens": 5, **kwargs}
    )
    assert raw.parse().choices
    return raw.headers


def refused(gw: Gateway, key: keys.CreatedKey, **kwargs: Any) -> openai.RateLimitError:
    with pytest.raises(openai.RateLimitError) as caught:
        client(gw, key).chat.completions.create(model="gpt-mock", messages=HI, **{"max_tokens": 5, **kwargs})
    error = caught.value
    assert error.status_code == 429
    assert int(error.response.headers["Retry-After"]) >= 1
    return error


def test_the_allowance_then_429_with_retry_after(limited: Gateway, upstream: MockUpstream) -> None:
    _, key, user_id = limited.new_user("1")
    client = openai.OpenAI(base_url=limited.base_url + "/v1", api_key=key, max_retries=0)
    left = []
    for _ in range(RPM):
        raw = client.chat.completions.with_raw_response.create(model="gpt-mock", messages=HI, max_tokens=5)
        left.append(raw.headers["x-ratelimit-remaining-requests"])
        assert raw.headers["x-ratelimit-limit-requests"] == str(RPM)
        assert "x-ratelimit-limit-tokens" not in raw.headers  # no token limit applies: no such headers
    assert left == ["2", "1", "0"]
    before = upstream.count("gpt-mock")
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-mock", messages=HI, max_tokens=5)
    error = refused.value
    assert error.status_code == 429 and error.code == "rate_limit_exceeded"
    assert "3 requests per minute for this user" in error.message
    assert 1 <= int(error.response.headers["Retry-After"]) <= 60 // RPM
    assert upstream.count("gpt-mock") == before
    assert len(limited.wait_for_usage(user_id, RPM)) == RPM  # the refusal has no usage row and no cost
    _, other_key, _ = limited.new_user("1")
    other = openai.OpenAI(base_url=limited.base_url + "/v1", api_key=other_key, max_retries=0)
    assert other.chat.completions.create(model="gpt-mock", messages=HI, max_tokens=5).choices


def test_key_tokens_a_minute_estimated_then_corrected_with_six_headers(limited: Gateway) -> None:
    _, (key,) = limited_user(limited, limits.LimitChange(rpm=50, tpm=1000))
    first = client(limited, key).chat.completions.with_raw_response.create(
        model="gpt-mock", messages=HI, max_tokens=600
    )
    used = first.parse().usage
    assert used is not None
    assert all(name in first.headers for name in SIX), first.headers
    assert first.headers["x-ratelimit-limit-requests"] == "50"
    assert first.headers["x-ratelimit-remaining-requests"] == "49"
    assert first.headers["x-ratelimit-limit-tokens"] == "1000"
    # "hi" is estimated at 8 prompt tokens, and the output at its cap: 608 of 1000 charged
    assert first.headers["x-ratelimit-remaining-tokens"] == "392"
    assert first.headers["x-ratelimit-reset-tokens"].endswith("s")
    # settled at what it used: another 608 fit, which they would not at the estimate
    second = chat(limited, key, max_tokens=600, stream=False)
    remaining = int(second["x-ratelimit-remaining-tokens"])
    assert 1000 - 608 - used.total_tokens <= remaining <= 1000 - 608 - used.total_tokens + 100
    error = refused(limited, key, max_tokens=990)
    assert error.code == "rate_limit_exceeded"
    assert "1000 tokens per minute for this key" in error.message
    assert all(name in error.response.headers for name in SIX)
    assert int(error.response.headers["x-ratelimit-remaining-tokens"]) < 998


def test_six_headers_on_a_stream(limited: Gateway) -> None:
    _, (key,) = limited_user(limited, limits.LimitChange(rpm=10, tpm=100_000))
    raw = client(limited, key).chat.completions.with_raw_response.create(
        model="gpt-mock", messages=HI, max_tokens=5, stream=True, stream_options={"include_usage": True}
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert [raw.headers[name] for name in SIX] == ["10", "9", "6s", "100000", "99987", "8ms"]
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)


def test_concurrent_requests_per_key(limited: Gateway) -> None:
    _, (key,) = limited_user(limited, limits.LimitChange(max_concurrency=1))
    stream = client(limited, key).chat.completions.create(
        model="mock-slow-stream", messages=HI, max_tokens=50, stream=True
    )
    next(iter(stream))
    error = refused(limited, key)
    assert error.code == "concurrency_limit_exceeded"
    assert "at most 1 at a time for this key" in error.message
    assert error.response.headers["Retry-After"] == "1"
    assert list(stream)  # the rest of the stream; its end gives the slot back
    assert eventually_admitted(limited, key)
    # an upstream error, and an upstream cut mid-stream, give it back before the client hears of it
    with pytest.raises(openai.APIStatusError) as failed:
        client(limited, key).chat.completions.create(model="mock-500", messages=HI, max_tokens=5)
    assert failed.value.status_code == 502
    chat(limited, key)
    with pytest.raises(openai.APIError):
        words: list[openai.types.chat.ChatCompletionMessageParam] = [
            {"role": "user", "content": "a b c d e f"}
        ]
        list(client(limited, key).chat.completions.create(model="mock-drop", messages=words, stream=True))
    assert eventually_admitted(limited, key)


def eventually_admitted(gw: Gateway, key: keys.CreatedKey, timeout: float = 5) -> bool:
    """The key is admitted within `timeout` (a slot freed at the stream's end, a limit reloaded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            chat(gw, key)
            return True
        except openai.RateLimitError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def test_a_user_limit_counts_across_their_keys(limited: Gateway) -> None:
    _, (one, two) = limited_user(limited, limits.NO_CHANGE, limits.NO_CHANGE, own=limits.LimitChange(rpm=2))
    assert chat(limited, one)["x-ratelimit-remaining-requests"] == "1"
    assert chat(limited, two)["x-ratelimit-remaining-requests"] == "0"
    for key in (one, two):
        assert "2 requests per minute for this user" in refused(limited, key).message


def test_a_tier_applies_and_a_user_override_wins(limited: Gateway) -> None:
    async def tier(conn: AsyncConnection, _k: KeyRing) -> None:
        await limits.set_tier(conn, "small", limits.LimitChange(rpm=1))

    limited.db(tier)
    _, (plain,) = limited_user(limited, limits.NO_CHANGE, tier="small")
    assert chat(limited, plain)["x-ratelimit-limit-requests"] == "1"
    assert "1 requests per minute for this user" in refused(limited, plain).message
    _, (raised,) = limited_user(limited, limits.NO_CHANGE, tier="small", own=limits.LimitChange(rpm=3))
    assert [chat(limited, raised)["x-ratelimit-remaining-requests"] for _ in range(3)] == ["2", "1", "0"]
    # a key's own limit is counted for the key alone, under its user's
    _, (strict,) = limited_user(
        limited, limits.LimitChange(rpm=1), tier="small", own=limits.LimitChange(rpm=3)
    )
    chat(limited, strict)
    assert "1 requests per minute for this key" in refused(limited, strict).message


def test_anthropic_messages_refused_in_anthropics_shape(limited: Gateway) -> None:
    _, (key,) = limited_user(limited, limits.LimitChange(rpm=1))
    api = anthropic.Anthropic(base_url=limited.base_url, api_key=key.secret, max_retries=0)
    message: anthropic.types.MessageParam = {"role": "user", "content": "hi"}
    raw = api.messages.with_raw_response.create(model="gpt-mock", max_tokens=5, messages=[message])
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(anthropic.RateLimitError) as caught:
        api.messages.create(model="gpt-mock", max_tokens=5, messages=[message])
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert "1 requests per minute for this key" in body["error"]["message"]
    assert int(caught.value.response.headers["Retry-After"]) >= 1


STREAMS = 200


def test_every_slot_comes_back_after_streams_hung_up_mid_stream(limited: Gateway) -> None:
    many = limits.LimitChange(max_concurrency=STREAMS)
    user_id, (key,) = limited_user(limited, many, own=many)

    async def hang_up_all() -> list[int]:
        headers = {"Authorization": f"Bearer {key.secret}"}
        body = {"model": "mock-slow-stream", "messages": HI, "stream": True, "max_tokens": 50}
        pool = httpx.Limits(max_connections=STREAMS + 10)
        async with httpx.AsyncClient(base_url=limited.base_url, limits=pool, timeout=60) as http:
            started = asyncio.Event()
            opened: list[int] = []

            async def one() -> int:
                async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as resp:
                    if resp.status_code == 200:
                        await anext(resp.aiter_bytes())  # the first chunk: the stream is under way
                    opened.append(resp.status_code)
                    if len(opened) == STREAMS:
                        started.set()
                    await started.wait()  # all of them in flight at once, then every one hangs up
                    return resp.status_code

            return await asyncio.gather(*(one() for _ in range(STREAMS)))

    statuses = asyncio.run(hang_up_all())
    assert statuses == [200] * STREAMS  # all admitted at once: 200 slots in use together

    async def one_at_a_time(conn: AsyncConnection, _k: KeyRing) -> None:
        one = limits.LimitChange(max_concurrency=1)
        await keys.set_limits(conn, key.key.id, one)
        await limits.set_user_limits(conn, one, user_id=user_id)

    limited.db(one_at_a_time)
    # with one slot for the key and one for the user, a request passes only if none was left held
    assert eventually_admitted(limited, key)
    rows = limited.wait_for_usage(user_id, STREAMS + 1)
    assert sum(row.status_code == 499 for row in rows) == STREAMS  # every stream ended by its client


def test_x_forwarded_for_believed_from_a_trusted_proxy_only(limited: Gateway) -> None:
    user_id, (key,) = limited_user(limited, limits.NO_CHANGE)
    headers = {"Authorization": f"Bearer {key.secret}"}
    body = {"model": "gpt-mock", "messages": HI, "max_tokens": 5}
    # 127.0.0.2 is not a trusted proxy: its X-Forwarded-For is a forgery and changes nothing
    untrusted = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=limited.base_url, transport=untrusted) as http:
        forged = {**headers, "X-Forwarded-For": "6.6.6.6"}
        assert http.post("/v1/chat/completions", json=body, headers=forged).status_code == 200
    # 127.0.0.1 is: the right-most address it names that is not itself a trusted proxy
    with httpx.Client(base_url=limited.base_url) as http:
        forwarded = {**headers, "X-Forwarded-For": "6.6.6.6, 198.51.100.7"}
        assert http.post("/v1/chat/completions", json=body, headers=forwarded).status_code == 200
    rows = sorted(limited.wait_for_usage(user_id, 2), key=lambda row: row.id)
    assert [row.client_ip for row in rows] == ["127.0.0.2", "198.51.100.7"]


def test_login_throttle_counts_the_address_a_trusted_proxy_names(limited: Gateway) -> None:
    def login(forwarded: str, local_address: str = "127.0.0.1") -> int:
        transport = httpx.HTTPTransport(local_address=local_address)
        with httpx.Client(base_url=limited.base_url, transport=transport) as http:
            body = {"login": f"nobody-{time.monotonic_ns()}", "password": "whatever pass"}
            return http.post("/api/auth/login", json=body, headers={"X-Forwarded-For": forwarded}).status_code

    assert [login("198.51.100.30") for _ in range(3)] == [401] * 3
    assert login("198.51.100.30") == 429  # that client's failures, counted through the proxy
    assert login("198.51.100.31") == 401  # another client behind the same proxy is not locked out
    # an untrusted peer's X-Forwarded-For names nobody: its own address is what fails and locks
    assert [login("198.51.100.32", "127.0.0.3") for _ in range(3)] == [401] * 3
    assert login("198.51.100.33", "127.0.0.3") == 429


def test_admin_api_sets_tiers_and_limits(limited: Gateway) -> None:
    async def make_admin(conn: AsyncConnection, keyring: KeyRing) -> tuple[str, int, int]:
        admin_id = await repo.create_user(conn, f"admin{limited.port}", email=None, is_admin=True)
        user_id = await repo.create_user(conn, f"cust{limited.port}", email=None)
        customer_key = await keys.create(conn, keyring, user_id)
        return (await keys.create(conn, keyring, admin_id)).secret, user_id, customer_key.key.id

    secret, user_id, key_id = limited.db(make_admin)
    limited.wait_key_live(secret)
    with httpx.Client(
        base_url=limited.base_url + "/api/admin", headers={"Authorization": f"Bearer {secret}"}
    ) as api:
        tier = api.put("/tiers/gold", json={"rpm": 600, "tpm": 90_000, "max_concurrency": 8})
        assert tier.status_code == 200, tier.text
        assert tier.json() == {
            "name": "gold",
            "limits": {"rpm": 600, "tpm": 90_000, "max_concurrency": 8},
            "users": 0,
        }
        assert api.put(f"/users/{user_id}/tier", json={"tier": "gold"}).json()["tier"] == "gold"
        own = api.patch(f"/users/{user_id}/limits", json={"rpm": 1200}).json()
        assert own["own"] == {"rpm": 1200, "tpm": None, "max_concurrency": None}
        assert own["tier_limits"] == {"rpm": 600, "tpm": 90_000, "max_concurrency": 8}
        key = api.patch(f"/keys/{key_id}/limits", json={"tpm": 5000, "max_concurrency": 2}).json()
        assert key["limits"] == {"rpm": None, "tpm": 5000, "max_concurrency": 2}
        cleared = api.patch(f"/keys/{key_id}/limits", json={"max_concurrency": None}).json()
        assert cleared["limits"] == {"rpm": None, "tpm": 5000, "max_concurrency": None}
        tiers = {t["name"]: t for t in api.get("/tiers").json()}
        assert tiers["gold"]["users"] == 1 and "default" in tiers
        bad = api.patch(f"/users/{user_id}/limits", json={"rpm": 0})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "rpm"
        missing = api.put(f"/users/{user_id}/tier", json={"tier": "platinum"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "tier_not_found"
        assert api.put("/tiers/Not A Name", json={"rpm": 1}).status_code == 400


def test_a_limited_key_cannot_make_a_less_limited_one(limited: Gateway) -> None:
    _, (key,) = limited_user(limited, limits.LimitChange(rpm=5))
    with httpx.Client(base_url=limited.base_url, headers={"Authorization": f"Bearer {key.secret}"}) as api:
        for body in ({}, {"rpm": 6}, {"rpm": None}):
            refused = api.post("/api/keys", json={"name": "child", **body})
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "key_rights_exceeded"
        made = api.post("/api/keys", json={"name": "child", "rpm": 5, "tpm": 1000})
        assert made.status_code == 201, made.text
        assert made.json()["limits"] == {"rpm": 5, "tpm": 1000, "max_concurrency": None}


def test_cli_sets_tiers_and_limits(limited: Gateway, backend: str) -> None:
    if backend == "postgres":
        pytest.skip("the CLI's parsing and messages do not depend on the backend (the services do)")
    username, _, user_id = limited.new_user("1")
    assert (
        "tier gold2: 7 rpm, 7000 tpm, 3 concurrent"
        in limited.cli("tier", "set", "gold2", "--rpm", "7", "--tpm", "7000", "--max-concurrency", "3").stdout
    )
    limited.cli("user", "tier", username, "gold2")
    shown = limited.cli("user", "limits", username, "--tpm", "9000").stdout
    assert f"user {username}: tier gold2 (7 rpm, 7000 tpm, 3 concurrent); own limits: 9000 tpm" in " ".join(
        shown.split()
    )
    added = limited.cli("key", "add", username, "--rpm", "2", "--max-concurrency", "1")
    key_id = int(added.stderr.split("created key ")[1].split()[0])
    changed = limited.cli("key", "set", str(key_id), "--rpm", "0", "--tpm", "500").stdout
    assert f"key {key_id} limits: 500 tpm, 1 concurrent" in changed  # 0 removed the rpm
    row = limited.db(lambda c, _k: repo.key_by_id(c, key_id))
    assert row is not None and (row.rpm_limit, row.tpm_limit, row.max_concurrency) == (None, 500, 1)
    user = limited.db(lambda c, _k: repo.user_by_id(c, user_id))
    assert user is not None and (user.tier, user.tpm_limit) == ("gold2", 9000)
