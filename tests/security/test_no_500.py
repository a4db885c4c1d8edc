"""Classes 5 and 6 of issue 9: no input gives a 500 (token arrays, numbers past 64 bits, huge prices
and credits), and every money amount goes through one strict parser with a documented maximum."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.money import MAX_PRICE_USD_PER_1M, parse_price_per_1m
from model_go.errors import InvalidRequest
from model_go.security import KeyRing
from model_go.services import prices, users
from tests.api.conftest import admin, start_api_gateway, stop_gateway
from tests.support.gateway import Gateway
from tests.support.mock_openai import MockUpstream
from tests.support.smtp import MailBox

HUGE = "99999999999999999999"


@pytest.fixture(scope="module")
def gw(upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    box = MailBox().start()
    gateway = start_api_gateway(tmp_path_factory.mktemp("no500"), "sqlite", upstream, box)
    yield gateway
    stop_gateway(gateway)
    box.stop()


def _embed(gw: Gateway, key: str, value: object) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/v1/embeddings",
        json={"model": "text-embed-mock", "input": value},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_embeddings_accept_every_openai_input_form_and_refuse_mixes(gw: Gateway) -> None:
    _, key, _ = gw.new_user("10")
    for good in ([1, 2], [[1, 2], [3]], ["a", "b"], "a"):
        assert _embed(gw, key, good).status_code == 200, good
    bad: object
    for bad in (["a", 1], [[1], "a"], [True], [], [[]], [1.5], [-1], [2**40]):
        resp = _embed(gw, key, bad)
        assert resp.status_code == 400, (bad, resp.text)
        assert resp.json()["error"]["param"] == "input"


def test_ids_beyond_64_bits_are_4xx_in_the_api_shape(gw: Gateway) -> None:
    api = admin(gw)
    checks = [
        ("GET", f"/api/tickets/{HUGE}"),
        ("GET", f"/api/admin/tickets/{HUGE}"),
        ("GET", f"/api/usage?page={HUGE}"),
        ("GET", f"/api/usage?key_id={HUGE}"),
        ("GET", f"/api/usage.csv?key_id={HUGE}"),
        ("DELETE", f"/api/keys/{HUGE}"),
        ("POST", f"/api/admin/users/{HUGE}/disable"),
        ("PATCH", f"/api/admin/channels/{HUGE}"),
    ]
    for method, path in checks:
        resp = api.call(method, path, json={} if method in ("POST", "PATCH") else None)
        assert 400 <= resp.status_code < 500, (method, path, resp.status_code, resp.text)
        assert set(resp.json()["error"]) == {"message", "type", "param", "code"}, path


def test_channel_priority_beyond_int64_is_400(gw: Gateway) -> None:
    api = admin(gw)
    resp = api.post(
        "/api/admin/channels",
        json={"name": "p", "provider": "openai", "base_url": "https://x.example/v1", "models": ["m"],
              "priority": 2**70, "api_key": "k"},
    )  # fmt: skip
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "priority"


@pytest.mark.parametrize(
    "amount",
    ["1e40", "9223372036854.775807", "1" * 28, "1_000", " 5", "١٢", "\uff19", "-1", "0", "1.0000001"],
)
def test_credits_refuse_anything_but_a_plain_bounded_amount(gw: Gateway, amount: str) -> None:
    api = admin(gw)
    user_id = gw.new_user("0")[2]
    resp = api.post(f"/api/admin/users/{user_id}/credit", json={"amount_usd": amount})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == "amount_usd"
    assert gw.balance(user_id) == 0


@pytest.mark.parametrize(
    "price", ["1e40", "1_000", " 5", "\uff11", str(MAX_PRICE_USD_PER_1M + 1), "-1", "nan"]
)
def test_prices_refuse_anything_but_a_plain_bounded_amount(gw: Gateway, price: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_price_per_1m(price, param="input")

    async def work(conn: AsyncConnection, _k: KeyRing) -> None:
        await prices.set_price(conn, "gpt-mock", prices.PriceTerms(input_usd=price, output_usd="1"))

    with pytest.raises(InvalidRequest):
        gw.db(work)
    resp = admin(gw).call("PUT", "/api/admin/prices/gpt-mock", json={"input": price, "output": "1"})
    assert resp.status_code == 400, resp.text


def test_a_free_model_and_a_dear_one_are_fine() -> None:
    assert parse_price_per_1m("0", param="input") == 0
    assert parse_price_per_1m(f"{MAX_PRICE_USD_PER_1M}.000000", param="input") == MAX_PRICE_USD_PER_1M * 10**6


def test_a_balance_cannot_be_credited_past_its_maximum(gw: Gateway) -> None:
    user_id = gw.new_user("0")[2]

    async def work(conn: AsyncConnection, _k: KeyRing) -> None:
        for _ in range(1001):  # $1M each: the 1001st would pass $1,000,000,000
            await users.credit(conn, "1000000", user_id=user_id)

    with pytest.raises(InvalidRequest) as caught:
        gw.db(work)
    assert caught.value.code == "balance_limit"
