"""Balances shared by two `model-go serve` replicas through Redis (billing/redis_ledger.py), on one
PostgreSQL database, against a Redis server this module starts itself so it can stop it and start
it again empty:
- 50 concurrent requests spread over both replicas against a balance that covers 10: exactly 10
  are served and reach the upstream, and the ledger adds up;
- a replica killed with requests in flight gives their holds back to the survivor once it misses
  its beats (MODELGO_REPLICA_DEAD_SECONDS);
- Redis restarting empty: the replicas write back their holds, and no money is made or lost;
- Redis unreachable: every request is refused in the API's shape (nothing sent upstream, nothing
  charged), and served again when Redis is back, without a restart;
- a key revoked through one replica is refused by the other at once, by a notice through Redis,
  not at its next poll of the database.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import orjson
import pytest
import redis
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.reservation import CAP_BYTES
from model_go.security import KeyRing
from model_go.storage import budgets_repo, repo, usage_repo
from tests.billing.ledger_checks import ledger_verify
from tests.conftest import add_mock_channel
from tests.support.gateway import Gateway, free_port
from tests.support.mock_openai import MockUpstream
from tests.support.replicas import two_replicas
from tests.support.usage_rows import usage_row

DEAD_SECONDS = 2.0
BODY = orjson.dumps(
    {
        "model": "mock-slow-stream",
        "stream": True,
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "race"}],
    }
)
# the worst case of BODY: one token per byte that may go upstream (the body and the room for the
# output cap) at $1/1M, plus max_tokens at $2/1M (the mock prices of tests/conftest.py)
RESERVATION = (len(BODY) + CAP_BYTES) * 1 + 5 * 2


class RedisServer:
    """A redis-server of this module's own, on a free loopback port, keeping nothing on disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=2)

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (.ci/run starts the Debian package's)"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def slow_upstream() -> Iterator[MockUpstream]:
    mock = MockUpstream().start()
    yield mock
    mock.stop()


@pytest.fixture(scope="module")
def replicas(
    slow_upstream: MockUpstream, own_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Gateway]]:
    env = {
        "MODELGO_REPLICA_DEAD_SECONDS": str(DEAD_SECONDS),
        # a long poll: changes reach the other replica by notice (commands announce theirs too)
        "MODELGO_SNAPSHOT_POLL_SECONDS": "5",
    }
    with two_replicas(
        tmp_path_factory,
        lambda first: add_mock_channel(first, slow_upstream, ["gpt-mock", "mock-slow-stream"]),
        redis_url=own_redis.url,
        env=env,
    ) as pair:
        yield pair


def funded_user(gw: Gateway, replicas: list[Gateway], reservations: int) -> tuple[str, int]:
    """A user whose balance covers exactly `reservations` of BODY, live on every replica: credited
    by `model-go credit add`, which announces the change (the replicas poll only every 5 s)."""
    username, key, user_id = gw.new_user("0")
    gw.cli("credit", "add", username, f"{reservations * RESERVATION / 1_000_000:.6f}")
    for replica in replicas:
        replica.wait_config_live(timeout=2)
    return key, user_id


def stream(gw: Gateway, key: str) -> int:
    with httpx.stream(
        "POST",
        gw.base_url + "/v1/chat/completions",
        content=BODY,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as resp:
        for _ in resp.iter_bytes():
            pass
        return resp.status_code


def in_background(gw: Gateway, key: str, statuses: list[int]) -> threading.Thread:
    """A stream in a thread; its status, or -1 when the connection broke (a killed replica)."""

    def run() -> None:
        try:
            statuses.append(stream(gw, key))
        except httpx.HTTPError:
            statuses.append(-1)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_until(check: object, timeout: float, what: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def shared_account(own_redis: RedisServer, gw: Gateway, user_id: int) -> dict[str, int]:
    """The user's committed, pending and reserved figures in Redis (0 where absent)."""
    prefix = gw.extra_env["MODELGO_REDIS_PREFIX"]
    found = own_redis.client().hmget(f"{prefix}bal:{user_id}", ["c", "p", "r"])
    return {name: int(value or 0) for name, value in zip("cpr", found, strict=True)}


def test_50_concurrent_requests_over_two_replicas_against_a_balance_for_10(
    replicas: list[Gateway], slow_upstream: MockUpstream
) -> None:
    first, second = replicas
    key, user_id = funded_user(first, replicas, 10)
    before_upstream = slow_upstream.count("mock-slow-stream")

    async def one(gw: Gateway, client: httpx.AsyncClient) -> tuple[int, int]:
        async with client.stream(
            "POST",
            gw.base_url + "/v1/chat/completions",
            content=BODY,
            headers={"Authorization": f"Bearer {key}"},
        ) as resp:
            async for _ in resp.aiter_bytes():
                pass
            return gw.port, resp.status_code

    async def race() -> list[tuple[int, int]]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=60)) as client:
            return await asyncio.gather(*(one(replicas[i % 2], client) for i in range(50)))

    answers = asyncio.run(race())
    statuses = [status for _, status in answers]
    assert statuses.count(200) == 10 and statuses.count(402) == 40, statuses
    assert {port for port, status in answers if status == 402} == {first.port, second.port}
    assert slow_upstream.count("mock-slow-stream") - before_upstream == 10, (
        "refused requests reached the upstream"
    )
    rows = first.wait_for_usage(user_id, 10)
    assert len([r for r in rows if r.status_code == 200]) == 10
    final = first.balance(user_id)
    assert 0 <= final < RESERVATION * 10
    assert sum(r.cost_micros for r in rows) == 10 * RESERVATION - final
    code, report = ledger_verify(second)
    assert code == 0, report


def test_a_killed_replicas_holds_come_back_when_it_misses_its_beats(
    replicas: list[Gateway], slow_upstream: MockUpstream, own_redis: RedisServer
) -> None:
    first, second = replicas
    key, user_id = funded_user(first, replicas, 3)
    slow_upstream.slow_stream_delay = 0.5  # 10 s streams: still in flight when their replica dies
    try:
        statuses: list[int] = []
        threads = [in_background(first, key, statuses) for _ in range(3)]
        wait_until(lambda: shared_account(own_redis, first, user_id)["r"] == 3 * RESERVATION, 10, "no holds")
        assert stream(second, key) == 402  # the first replica's three streams hold the balance
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        for t in threads:
            t.join(30)
        # the survivor reaps the dead replica's holds within its dead-after time and a beat or two
        wait_until(
            lambda: shared_account(own_redis, second, user_id)["r"] == 0,
            DEAD_SECONDS + 5,
            "the dead replica's holds were not released",
        )
        assert "missed its beats" in second.output()
    finally:
        slow_upstream.slow_stream_delay = 0.05
        first.start()
    # nothing the dead replica served was committed (it died mid-stream): the balance is whole again
    assert first.balance(user_id) == 3 * RESERVATION
    assert [stream(replicas[i % 2], key) for i in range(3)] == [200, 200, 200]
    code, report = ledger_verify(second)
    assert code == 0, report


def test_redis_restarting_empty_loses_no_money(
    replicas: list[Gateway], slow_upstream: MockUpstream, own_redis: RedisServer
) -> None:
    first, second = replicas
    key, user_id = funded_user(first, replicas, 4)
    assert stream(first, key) == 200  # one answered: settled, and soon committed
    first.wait_for_usage(user_id, 1)
    slow_upstream.slow_stream_delay = 0.3  # 6 s streams: in flight across the restart
    try:
        statuses: list[int] = []
        threads = [in_background(first, key, statuses), in_background(second, key, statuses)]
        wait_until(lambda: shared_account(own_redis, first, user_id)["r"] == 2 * RESERVATION, 10, "no holds")
        own_redis.kill()
        own_redis.start()  # the same port, nothing kept
        # each replica notices the new epoch within a beat and writes back its hold
        wait_until(
            lambda: shared_account(own_redis, first, user_id)["r"] == 2 * RESERVATION,
            5,
            "the holds in flight were not written back",
        )
        # the balance is read afresh from the database by the first request that needs it
        assert stream(second, key) == 200
        for t in threads:
            t.join(30)
        assert statuses == [200, 200]
    finally:
        slow_upstream.slow_stream_delay = 0.05
    rows = first.wait_for_usage(user_id, 4)
    spent = sum(r.cost_micros for r in rows)
    final = first.balance(user_id)
    assert final == 4 * RESERVATION - spent and final >= 0
    wait_until(
        lambda: shared_account(own_redis, first, user_id) == {"c": final, "p": 0, "r": 0},
        5,
        f"Redis does not agree with the database: {shared_account(own_redis, first, user_id)} vs {final}",
    )
    code, report = ledger_verify(second)
    assert code == 0, report


def test_unreachable_redis_refuses_every_request_then_recovers_without_restart(
    replicas: list[Gateway], own_redis: RedisServer
) -> None:
    first, second = replicas
    key, user_id = funded_user(first, replicas, 5)
    own_redis.kill()
    try:
        for gw in replicas:
            resp = httpx.post(
                gw.base_url + "/v1/chat/completions",
                content=BODY,
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            assert resp.status_code == 503, resp.text
            assert resp.headers["retry-after"] == "1"
            error = resp.json()["error"]
            assert error["code"] == "balance_unavailable" and error["type"] == "api_error"
            assert "nothing was charged" in error["message"]
            # what needs no balance still answers
            models = httpx.get(gw.base_url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
            assert models.status_code == 200
        assert "Redis is unreachable" in first.output()
    finally:
        own_redis.start()
    deadline = time.monotonic() + 10
    while (status := stream(second, key)) != 200:
        assert status == 503 and time.monotonic() < deadline, status
        time.sleep(0.2)
    assert stream(first, key) == 200
    first.wait_for_usage(user_id, 2)
    assert first.balance(user_id) > 0
    code, report = ledger_verify(first)
    assert code == 0, report


def test_a_key_budget_holds_across_replicas_from_its_past_spend(
    replicas: list[Gateway], slow_upstream: MockUpstream, own_redis: RedisServer
) -> None:
    """A daily budget of five reservations on a key that spent one today already (a usage row
    Redis has never seen): 30 concurrent streams over both replicas, four served."""
    first = replicas[0]
    _, _, user_id = first.new_user("10")
    now = datetime.now(UTC)

    async def work(conn: AsyncConnection, keyring: KeyRing) -> tuple[str, int]:
        key = await repo.create_key(conn, keyring, user_id, name="budgeted")
        await budgets_repo.set_budget(
            conn, key.id, {"budget_micros": 5 * RESERVATION, "budget_period": "day"}
        )
        await usage_repo.write_batch(
            conn,
            [usage_row(user_id, "past", now, key_id=key.id, cost_micros=RESERVATION)],
            [(user_id, "past", RESERVATION, now)],
        )
        return key.secret, key.id

    secret, key_id = first.db(work)
    for gw in replicas:
        gw.wait_key_live(secret, timeout=10)

    async def one(gw: Gateway, client: httpx.AsyncClient) -> tuple[int, str]:
        async with client.stream(
            "POST",
            gw.base_url + "/v1/chat/completions",
            content=BODY,
            headers={"Authorization": f"Bearer {secret}"},
        ) as resp:
            body = b"".join([chunk async for chunk in resp.aiter_bytes()])
            code = orjson.loads(body)["error"]["code"] if resp.status_code != 200 else ""
            return resp.status_code, code

    async def race() -> list[tuple[int, str]]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=40)) as client:
            return await asyncio.gather(*(one(replicas[i % 2], client) for i in range(30)))

    answers = asyncio.run(race())
    assert [a for a in answers if a[0] == 200] == [(200, "")] * 4, answers
    assert [a for a in answers if a[0] != 200] == [(402, "budget_exceeded")] * 26, answers
    rows = first.wait_for_usage(user_id, 5)
    spent_today = sum(r.cost_micros for r in rows)
    assert RESERVATION < spent_today <= 5 * RESERVATION
    prefix = first.extra_env["MODELGO_REDIS_PREFIX"]
    wait_until(
        lambda: own_redis.client().hget(f"{prefix}kb:{key_id}", "day") == str(spent_today),
        5,
        "Redis does not count the key's spend of today as the database does",
    )


def test_a_revocation_reaches_the_other_replica_by_notice_not_by_poll(replicas: list[Gateway]) -> None:
    """Polls are 5 s apart here: five revocations each seen within 1 s would happen by polling alone
    with a chance of 0.2^5 (0.03%)."""
    first, second = replicas
    _, owner, _ = first.new_user("5")
    auth = {"Authorization": f"Bearer {owner}"}
    delays = []
    for n in range(5):
        made = httpx.post(first.base_url + "/api/keys", json={"name": f"k{n}"}, headers=auth, timeout=30)
        assert made.status_code == 201, made.text
        secret, key_id = made.json()["secret"], made.json()["id"]
        models = second.base_url + "/v1/models"
        assert httpx.get(models, headers={"Authorization": f"Bearer {secret}"}, timeout=30).status_code == 200
        gone = httpx.delete(first.base_url + f"/api/keys/{key_id}", headers=auth, timeout=30)
        assert gone.status_code == 204, gone.text
        revoked_at = time.monotonic()
        while httpx.get(models, headers={"Authorization": f"Bearer {secret}"}, timeout=30).status_code == 200:
            assert time.monotonic() - revoked_at < 6.0
            time.sleep(0.01)
        delays.append(time.monotonic() - revoked_at)
    assert max(delays) < 1.0, delays
