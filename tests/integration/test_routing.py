"""Routing that survives failing channels, through the real server and a lane-per-channel mock
upstream: failover (500, 429, timeouts) with one usage row saying attempts=2, circuits that open,
probe once and close, channels disabled on refused credentials and shown so by `channel list`,
per-channel deadlines, the weighted split, the bound on upstream attempts under a crowd of
clients, and `channel test`."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import orjson
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.security import KeyRing
from model_go.services import channels as channel_service
from model_go.services.channels import health as channel_health
from model_go.storage import repo
from model_go.storage.tables import channels as channels_table
from tests.conftest import make_gateway
from tests.support.gateway import Gateway, drop_pg_database
from tests.support.mock_lanes import LANE_KEY, PROMPT_TOKENS, MockLanes

# name: (lane, behaviour, priority, weight, models, config)
CHANNELS: dict[str, tuple[str, str, int, int, list[str], list[str]]] = {
    "backup": ("backup", "ok", 0, 1, ["fo-500", "fo-429", "fo-timeout", "auth-model", "quota-model"], []),
    "first-500": ("first-500", "error:500", 10, 1, ["fo-500"], []),
    "first-429": ("first-429", "error:429:1", 10, 1, ["fo-429"], []),
    "first-slow": ("first-slow", "slow:5", 10, 1, ["fo-timeout"], ["first_byte_timeout=0.5"]),
    "total": ("total", "slow:5", 0, 1, ["total-model"], ["total_timeout=1"]),
    "stall": ("stall", "stall:5", 0, 1, ["stall-model"], ["idle_timeout=0.6"]),
    "cb": ("cb", "error:500", 0, 1, ["cb-model"], ["failure_threshold=2", "cooldown_seconds=2"]),
    "bad-key": ("bad-key", "error:401", 5, 1, ["auth-model"], []),
    "broke": ("broke", "quota", 5, 1, ["quota-model"], ["disable_after=1"]),
    "w3": ("w3", "ok", 0, 3, ["split"], []),
    "w1": ("w1", "ok", 0, 1, ["split"], []),
    "storm": ("storm", "error:500", 0, 1, ["storm-model"], ["cooldown_seconds=1"]),
    **{f"many-{i}": (f"many-{i}", "error:500", 0, 1, ["many-model"], []) for i in range(4)},
}
MODELS = sorted({m for *_, models, _ in CHANNELS.values() for m in models})


@dataclass
class Routing:
    gw: Gateway
    lanes: MockLanes
    ids: dict[str, int]


async def _setup(conn: AsyncConnection, _k: KeyRing) -> dict[str, int]:
    for model in MODELS:
        await repo.set_price(
            conn, model, input_per_1m=1_000_000, output_per_1m=2_000_000, cached_input_per_1m=500_000
        )
    return {row.name: row.id for row in await repo.list_channels(conn)}


@pytest.fixture(scope="module")
def routing(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routing]:
    lanes = MockLanes().start()
    gw = make_gateway(tmp_path_factory.mktemp(f"routing-{backend}"), backend, MODELGO_KEEPALIVE_SECONDS="0.2")
    for lane, behaviour, *_ in CHANNELS.values():
        lanes.set(lane, behaviour)

    async def add_channels(conn: AsyncConnection, keyring: KeyRing) -> None:
        # the services the CLI's `channel add` calls (the CLI itself: test_cli.py), in one process:
        # sixteen CLI processes cost this module over a minute of set-up on a loaded CI box
        for name, (lane, _behaviour, priority, weight, models, config) in CHANNELS.items():
            await channel_service.add(
                conn, keyring, name=name, provider="openai", base_url=lanes.lane_url(lane),
                models=models, api_key=LANE_KEY, priority=priority, weight=weight,
                config=channel_service.parse_config(config),
            )  # fmt: skip

    gw.db(add_channels)
    ids = gw.db(_setup)
    gw.start()
    yield Routing(gw, lanes, ids)
    gw.stop()
    lanes.stop()
    if gw.database_url:
        drop_pg_database(gw.database_url)


def client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=30)


def ask(gw: Gateway, key: str, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi there"}], **extra}
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def channels(gw: Gateway) -> dict[str, dict[str, Any]]:
    """`channel list --json`, read straight from the database (the CLI takes seconds to start here,
    longer than the cooldowns under test); test_channel_list_renders_health runs the real CLI."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> dict[str, dict[str, Any]]:
        now = datetime.now(UTC)
        rows = await repo.list_channels(conn)
        return {r.name: {**r._asdict(), "health": channel_health(r, now)} for r in rows}

    return gw.db(work)


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


# -- failover -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "lane"), [("fo-500", "first-500"), ("fo-429", "first-429")])
def test_failover_to_the_next_channel_before_the_first_byte(routing: Routing, model: str, lane: str) -> None:
    gw, lanes = routing.gw, routing.lanes
    _, key, user_id = gw.new_user("10")
    before = lanes.hits[lane]
    reply = client(gw, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "a b"}]
    )
    assert reply.choices[0].message.content == "echo: a b"
    stream = client(gw, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "c d"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: c d"
    assert lanes.hits[lane] == before + 2, "the first channel was not tried first"
    rows = gw.wait_for_usage(user_id, 2)
    assert len(rows) == 2, "one usage row per client request, not one per attempt"
    for row in rows:
        assert (row.status_code, row.attempts, row.channel_id) == (200, 2, routing.ids["backup"])
        assert row.cost_micros == PROMPT_TOKENS + 3 * 2


def test_attempts_are_bounded_by_max_attempts(routing: Routing) -> None:
    gw, lanes = routing.gw, routing.lanes
    _, key, user_id = gw.new_user("10")
    resp = ask(gw, key, "many-model")
    assert resp.status_code == 502 and resp.json()["error"]["code"] == "upstream_error"
    assert sum(lanes.hits[f"many-{i}"] for i in range(4)) == 3  # MODELGO_MAX_ATTEMPTS
    row = gw.wait_for_usage(user_id, 1)[0]
    assert (row.attempts, row.status_code, row.cost_micros) == (3, 502, 0)


def test_failover_when_the_first_channel_times_out(routing: Routing) -> None:
    gw, lanes = routing.gw, routing.lanes
    _, key, user_id = gw.new_user("10")
    started = time.monotonic()
    reply = client(gw, key).chat.completions.create(
        model="fo-timeout", messages=[{"role": "user", "content": "x"}]
    )
    elapsed = time.monotonic() - started
    assert reply.choices[0].message.content == "echo: x"
    assert 0.5 <= elapsed < 3, "the channel's first_byte_timeout (0.5 s) was not applied"
    assert lanes.hits["first-slow"] >= 1
    row = gw.wait_for_usage(user_id, 1)[0]
    assert (row.status_code, row.attempts, row.channel_id) == (200, 2, routing.ids["backup"])


def test_per_channel_total_and_idle_deadlines(routing: Routing) -> None:
    gw = routing.gw
    _, key, user_id = gw.new_user("10")
    started = time.monotonic()
    resp = ask(gw, key, "total-model")
    assert resp.status_code == 504 and resp.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 3, "the channel's total_timeout (1 s) was not applied"
    started = time.monotonic()
    with pytest.raises(openai.APIError):
        for _ in client(gw, key).chat.completions.create(
            model="stall-model", messages=[{"role": "user", "content": "a b c"}], stream=True
        ):
            pass
    assert time.monotonic() - started < 3, "the channel's idle_timeout (0.6 s) was not applied"
    rows = gw.wait_for_usage(user_id, 2)
    assert [(r.status_code, r.error_code) for r in rows] == [(504, "upstream_timeout")] * 2
    assert rows[0].cost_micros == 0 and rows[1].cost_micros > 0  # the streamed word is billed


# -- circuit breaker ------------------------------------------------------------------------------


def test_circuit_opens_probes_once_and_closes(routing: Routing) -> None:
    gw, lanes = routing.gw, routing.lanes
    _, key, _ = gw.new_user("10")
    for _ in range(2):  # failure_threshold=2
        assert ask(gw, key, "cb-model").status_code == 502
    opened = time.monotonic()
    assert lanes.hits["cb"] == 2
    refused = ask(gw, key, "cb-model")
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "upstream_cooling_down"
    assert refused.headers["retry-after"] in ("1", "2")
    assert lanes.hits["cb"] == 2, "an open circuit still sent the request upstream"
    eventually(lambda: channels(gw)["cb"]["health"].startswith("cooling down until"))
    record = channels(gw)["cb"]
    assert record["last_error"] == "upstream_error (cb-model)" and record["last_error_at"]
    assert abs((record["cooldown_until"] - datetime.now(UTC)).total_seconds()) < 2.5

    # cooldown over, upstream still failing: the one probe fails and the cooldown doubles (4 s)
    time.sleep(max(0.0, opened + 2.1 - time.monotonic()))
    assert ask(gw, key, "cb-model").status_code == 502
    assert lanes.hits["cb"] == 3
    reopened = time.monotonic()
    again = ask(gw, key, "cb-model")
    assert again.status_code == 503 and int(again.headers["retry-after"]) >= 3
    assert lanes.hits["cb"] == 3

    # upstream recovered (and slow): after the cooldown exactly one request probes; the crowd
    # arriving meanwhile is refused without reaching the upstream
    lanes.set("cb", "slow:1")
    time.sleep(max(0.0, reopened + 4.1 - time.monotonic()))
    with ThreadPoolExecutor(10) as pool:
        probe = pool.submit(ask, gw, key, "cb-model")
        time.sleep(0.3)
        crowd = [pool.submit(ask, gw, key, "cb-model") for _ in range(9)]
        assert [f.result().status_code for f in crowd] == [503] * 9
        assert probe.result().status_code == 200
    assert lanes.hits["cb"] == 4
    lanes.set("cb", "ok")
    assert [ask(gw, key, "cb-model").status_code for _ in range(3)] == [200] * 3
    assert lanes.hits["cb"] == 7
    eventually(lambda: channels(gw)["cb"]["health"] == "ok")


def test_no_storm_when_fifty_clients_hit_a_failing_channel(routing: Routing) -> None:
    """Without the circuit every request below would reach the upstream; with it, at most the
    requests in flight when it opened, the failures that opened it and one probe per cooldown."""
    gw, lanes = routing.gw, routing.lanes
    _, key, user_id = gw.new_user("10")
    clients, duration, cooldown, threshold = 50, 4.0, 1.0, 3
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def hammer() -> None:
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < stop:
                resp = http.post(
                    gw.base_url + "/v1/chat/completions",
                    json={"model": "storm-model", "messages": [{"role": "user", "content": "x"}]},
                    headers={"Authorization": f"Bearer {key}"},
                )
                with lock:
                    statuses[resp.status_code] += 1

    threads = [threading.Thread(target=hammer) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    requests = sum(statuses.values())
    attempts = lanes.hits["storm"]
    probes = int(duration / cooldown) + 1
    assert set(statuses) <= {502, 503}
    assert 1 <= attempts <= clients + threshold + probes, (
        f"{attempts} upstream attempts for {requests} requests"
    )
    assert requests >= 4 * attempts, f"too few requests ({requests}) to show the bound"
    print(f"storm: {requests} requests from {clients} clients, {attempts} upstream attempts")
    rows = gw.wait_for_usage(user_id, requests, timeout=30)
    assert len(rows) == requests, "one usage row per client request"
    assert sum(r.attempts for r in rows) == attempts
    assert all(r.cost_micros == 0 for r in rows)


# -- channels disabled on refused credentials or an empty upstream account -------------------------


def test_channel_disabled_after_refused_credentials_and_shown_in_channel_list(routing: Routing) -> None:
    gw, lanes = routing.gw, routing.lanes
    _, key, user_id = gw.new_user("10")
    for _ in range(3):  # disable_after=3: one refusal is not a trend
        assert ask(gw, key, "auth-model").json()["choices"][0]["message"]["content"] == "echo: hi there"
    assert lanes.hits["bad-key"] == 3
    rows = gw.wait_for_usage(user_id, 3)
    assert [r.attempts for r in rows] == [2, 2, 2]
    eventually(lambda: not channels(gw)["bad-key"]["enabled"])
    record = channels(gw)["bad-key"]
    assert record["health"].startswith("disabled: auto: the upstream refused the channel's credentials")
    assert record["last_error"] == "upstream_auth_failed (auth-model)" and record["last_error_at"]
    table = gw.cli("channel", "list").stdout
    assert "disabled: auto" in table and LANE_KEY not in table and "Incorrect API key" not in table
    assert ask(gw, key, "auth-model").status_code == 200
    assert lanes.hits["bad-key"] == 3, "a disabled channel still got traffic"
    assert gw.wait_for_usage(user_id, 4)[-1].attempts == 1

    # the operator fixes the key and re-enables it: traffic comes back
    lanes.set("bad-key", "ok")
    gw.cli("channel", "enable", "bad-key")
    eventually(lambda: ask(gw, key, "auth-model").status_code == 200 and lanes.hits["bad-key"] == 4)
    assert channels(gw)["bad-key"]["health"] == "ok"


def test_channel_disabled_when_the_upstream_account_is_out_of_quota(routing: Routing) -> None:
    gw, lanes = routing.gw, routing.lanes
    _, key, _ = gw.new_user("10")
    resp = ask(gw, key, "quota-model")
    assert resp.status_code == 200 and lanes.hits["broke"] == 1
    eventually(lambda: not channels(gw)["broke"]["enabled"])
    assert "out of quota" in channels(gw)["broke"]["health"]
    assert ask(gw, key, "quota-model").status_code == 200
    assert lanes.hits["broke"] == 1


# -- the weighted split ---------------------------------------------------------------------------


def test_weights_three_to_one_over_four_hundred_requests(routing: Routing) -> None:
    gw, lanes = routing.gw, routing.lanes
    _, key, user_id = gw.new_user("10")
    n = 400
    before = lanes.hits["w3"] + lanes.hits["w1"]
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda _: ask(gw, key, "split").status_code, range(n)))
    assert codes == [200] * n
    heavy = lanes.hits["w3"]
    assert heavy + lanes.hits["w1"] - before == n
    # Binomial(400, 3/4): mean 300, sd 8.66; ±4.5 sd fails a correct router once in ~150,000 runs,
    # while a router that ignored the weights (mean 200) could not pass
    assert abs(heavy - 300) <= 39, f"weight 3 got {heavy} of {n}"
    assert len(gw.wait_for_usage(user_id, n, timeout=30)) == n


# -- channel test ----------------------------------------------------------------------------------


def test_channel_test_reports_status_and_latency_without_billing(routing: Routing) -> None:
    gw, lanes = routing.gw, routing.lanes
    rows_before = len(gw.db(lambda c, _k: repo.list_usage(c)))
    before = lanes.hits["backup"]
    ok = gw.cli("channel", "test", "backup")
    assert ok.stdout.startswith("ok: channel backup (openai, model fo-500) answered HTTP 200 in ")
    assert lanes.hits["backup"] == before + 1
    assert lanes.last_body("backup")["max_tokens"] == 1
    failed = gw.cli("channel", "test", "first-500", check=False)
    assert failed.returncode == 1
    assert "HTTP 500" in failed.stderr and "upstream_error" in failed.stderr
    assert LANE_KEY not in failed.stderr + failed.stdout
    missing = gw.cli("channel", "test", "nope", check=False)
    assert missing.returncode == 1 and "no such channel" in missing.stderr
    time.sleep(1)  # a usage row would have been flushed by now
    assert len(gw.db(lambda c, _k: repo.list_usage(c))) == rows_before


def test_channel_list_renders_health(routing: Routing) -> None:
    gw = routing.gw
    until = datetime.now(UTC) + timedelta(hours=1)
    failed_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    async def cooling(conn: AsyncConnection, _k: KeyRing) -> None:
        await conn.execute(
            update(channels_table)
            .where(channels_table.c.name == "w1")
            .values(cooldown_until=until, last_error_at=failed_at, last_error="upstream_error (split)")
        )

    gw.db(cooling)
    records = {
        r["name"]: r for r in map(orjson.loads, gw.cli("channel", "list", "--json").stdout.splitlines())
    }
    assert records["w1"]["health"] == f"cooling down until {until:%Y-%m-%d %H:%M:%S} UTC"
    assert records["w1"]["last_error"] == "upstream_error (split)"
    assert records["w1"]["last_error_at"] == failed_at.isoformat()
    assert records["w3"]["health"] == "ok" and records["w3"]["last_error_at"] is None
    assert all("api_key_enc" not in records[name] and records[name]["has_key"] is True for name in CHANNELS)
    table = gw.cli("channel", "list").stdout  # rich may wrap a cell at its spaces
    assert "cooling" in table and f"{until:%Y-%m-%d}" in table and "03:04:05" in table
    assert LANE_KEY not in table
