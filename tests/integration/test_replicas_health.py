"""Channel health across two `model-go serve` replicas on one PostgreSQL database and one Redis: a
channel whose upstream fails is counted by both replicas together, and once its circuit opens
neither replica sends it a request (they fail over to a healthy channel, or answer that the model
is cooling down); after the cooldown exactly one request across both replicas probes it, and its
success closes the circuit on both. A server whose Redis is unreachable starts and keeps its circuits
to itself (its in-process breaker: tests/unit/test_redis_health.py).

Upstream calls are counted per channel by a lane-per-channel mock (tests/support/mock_lanes.py)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.security import KeyRing
from model_go.services import channels as channel_service
from model_go.storage import repo
from tests.support.gateway import Gateway
from tests.support.mock_lanes import LANE_KEY, MockLanes
from tests.support.replicas import two_replicas

COOLDOWN = 2.0
# name: (lane, priority, models, config); "sick" and "lonely" fail until a test says otherwise
CHANNELS: dict[str, tuple[str, int, list[str], list[str]]] = {
    "sick": ("sick", 10, ["hx-model"], ["failure_threshold=2", f"cooldown_seconds={COOLDOWN:g}"]),
    "well": ("well", 0, ["hx-model"], []),
    "lonely": ("lonely", 0, ["lonely-model"], ["failure_threshold=2", f"cooldown_seconds={COOLDOWN:g}"]),
}


@dataclass
class Pair:
    first: Gateway
    second: Gateway
    lanes: MockLanes
    key: str


def add_channels(lanes: MockLanes) -> Callable[[AsyncConnection, KeyRing], Awaitable[None]]:
    async def add(conn: AsyncConnection, keyring: KeyRing) -> None:
        for name, (lane, priority, models, config) in CHANNELS.items():
            await channel_service.add(
                conn, keyring, name=name, provider="openai", base_url=lanes.lane_url(lane),
                models=models, api_key=LANE_KEY, priority=priority,
                config=channel_service.parse_config(config),
            )  # fmt: skip
        for model in ("hx-model", "lonely-model"):
            await repo.set_price(
                conn, model, input_per_1m=1_000_000, output_per_1m=2_000_000, cached_input_per_1m=500_000
            )

    return add


@pytest.fixture(scope="module")
def lanes() -> Iterator[MockLanes]:
    mock = MockLanes().start()
    yield mock
    mock.stop()


@pytest.fixture(scope="module")
def pair(lanes: MockLanes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with two_replicas(tmp_path_factory, lambda first: first.db(add_channels(lanes))) as (first, second):
        _, key, _ = first.new_user("10")
        for gw in (first, second):
            gw.wait_key_live(key, timeout=10)
        yield Pair(first, second, lanes, key)


def ask(gw: Gateway, key: str, model: str = "hx-model") -> httpx.Response:
    body = {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_a_circuit_opened_by_both_replicas_is_skipped_by_both_probed_once_and_closed_on_both(
    pair: Pair,
) -> None:
    first, second, lanes, key = pair.first, pair.second, pair.lanes, pair.key
    lanes.set("sick", "error:500")
    # one failure on each replica: together they reach the threshold of two
    assert ask(first, key).status_code == 200  # failed over to "well"
    assert ask(second, key).status_code == 200
    opened = time.monotonic()
    assert lanes.hits["sick"] == 2
    time.sleep(0.2)  # the open circuit is published to both replicas (measured: milliseconds)
    for gw in (first, second, first, second):
        assert ask(gw, key).status_code == 200
    assert lanes.hits["sick"] == 2, "a replica still sent requests to the open circuit"

    # recovered, and slow: after the cooldown one request across both replicas probes it, the
    # others (on either replica) are served by the healthy channel meanwhile
    lanes.set("sick", "slow:1")
    time.sleep(max(0.0, opened + COOLDOWN + 0.3 - time.monotonic()))
    with ThreadPoolExecutor(8) as pool:
        crowd = [pool.submit(ask, gw, key) for _ in range(4) for gw in (first, second)]
        time.sleep(0.3)
        crowd += [pool.submit(ask, gw, key) for _ in range(4) for gw in (first, second)]
        assert [f.result().status_code for f in crowd] == [200] * 16
    assert lanes.hits["sick"] == 3, "not exactly one half-open probe across both replicas"

    # the probe answered: closed on both replicas, so "sick" (the higher priority) serves again
    lanes.set("sick", "ok")
    time.sleep(0.1)  # the close is published to the other replica (measured: milliseconds)
    before = lanes.hits["sick"]
    for gw in (first, second):
        assert ask(gw, key).status_code == 200
    assert lanes.hits["sick"] == before + 2, "a replica still skips the closed circuit"


def test_the_other_replica_answers_cooling_down_without_calling_the_upstream(pair: Pair) -> None:
    first, second, lanes, key = pair.first, pair.second, pair.lanes, pair.key
    lanes.set("lonely", "error:500")
    assert [ask(first, key, "lonely-model").status_code for _ in range(2)] == [502, 502]
    assert lanes.hits["lonely"] == 2
    time.sleep(0.2)
    refused = ask(second, key, "lonely-model")
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "upstream_cooling_down"
    assert 1 <= int(refused.headers["retry-after"]) <= COOLDOWN
    assert lanes.hits["lonely"] == 2, "the second replica called the upstream of an open circuit"
    lanes.set("lonely", "ok")


def test_a_server_whose_redis_is_unreachable_starts_and_keeps_its_circuits_to_itself(
    lanes: MockLanes, tmp_path: Path
) -> None:
    """Requests are refused before routing then (the shared ledger cannot reserve: 503
    balance_unavailable), so the in-process breaker it falls back to is exercised by
    tests/unit/test_redis_health.py; here: the server starts, says so, and calls no upstream."""
    gw = Gateway(
        data_dir=tmp_path, database_url=None, extra_env={"MODELGO_REDIS_URL": "redis://127.0.0.1:1/0"}
    )
    gw.db(add_channels(lanes))
    gw.start()
    try:
        _, key, _ = gw.new_user("10")
        gw.wait_key_live(key, timeout=10)
        start = lanes.hits["lonely"]
        refused = ask(gw, key, "lonely-model")
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "balance_unavailable"
        assert lanes.hits["lonely"] == start
        assert "Redis is unreachable: channel health is kept per replica" in gw.output()
    finally:
        gw.stop()
