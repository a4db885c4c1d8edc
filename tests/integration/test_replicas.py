"""Two `model-go serve` replicas on one PostgreSQL database and one Redis (MODELGO_REDIS_URL): a
key's requests-a-minute and concurrency limits hold across them; a key made through one works on
the other at once and its revocation reaches the other within a second; a SIGKILL of one replica
under load leaves a ledger that verifies. (Balances across replicas, and Redis stopping or
restarting empty: test_replicas_ledger.py.)

Replicas share the data directory, so they share the server secret (and append to one log)."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.billing.ledger_checks import ledger_verify
from tests.conftest import add_mock_channel
from tests.support.gateway import Gateway
from tests.support.mock_openai import MockUpstream
from tests.support.replicas import two_replicas


@pytest.fixture(scope="module")
def replicas(upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Gateway]]:
    with two_replicas(
        tmp_path_factory, lambda first: add_mock_channel(first, upstream, ["gpt-mock", "mock-slow-stream"])
    ) as pair:
        yield pair


def limited_key(gw: Gateway, *options: str) -> str:
    username, _, _ = gw.new_user("5")
    return gw.cli("key", "add", username, *options).stdout.strip().splitlines()[-1]


def chat(gw: Gateway, secret: str, model: str = "gpt-mock") -> httpx.Response:
    body = {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def test_requests_a_minute_hold_across_replicas(replicas: list[Gateway]) -> None:
    first, second = replicas
    secret = limited_key(first, "--rpm", "6")
    for gw in replicas:
        gw.wait_key_live(secret, timeout=10)
    answers = [chat(replicas[i % 2], secret) for i in range(12)]
    ok = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 429]
    assert len(ok) == 6 and len(refused) == 6, [r.status_code for r in answers]
    assert {r.url.port for r in ok} == {first.port, second.port}  # both replicas served some
    assert {r.url.port for r in refused} == {first.port, second.port}  # and both refused some
    for resp in refused:
        assert int(resp.headers["retry-after"]) >= 1
        assert resp.json()["error"]["code"] == "rate_limit_exceeded"
        assert resp.headers["x-ratelimit-limit-requests"] == "6"
    assert ok[-1].headers["x-ratelimit-remaining-requests"] == "0"


def test_concurrency_holds_across_replicas_and_slots_come_back(replicas: list[Gateway]) -> None:
    first, second = replicas
    secret = limited_key(first, "--max-concurrency", "2")
    for gw in replicas:
        gw.wait_key_live(secret, timeout=10)
    started = threading.Barrier(3)
    statuses: list[int] = []

    def stream() -> None:
        body = {
            "model": "mock-slow-stream",
            "stream": True,
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "hold"}],
        }
        with httpx.stream(
            "POST",
            first.base_url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        ) as resp:
            statuses.append(resp.status_code)
            lines = resp.iter_lines()
            next(lines)  # the first chunk: the request holds its slot now
            started.wait(10)
            for _ in lines:
                pass

    holders = [threading.Thread(target=stream) for _ in range(2)]
    for t in holders:
        t.start()
    started.wait(10)
    third = chat(second, secret)  # the other replica sees both slots taken
    assert third.status_code == 429 and third.json()["error"]["code"] == "concurrency_limit_exceeded"
    for t in holders:
        t.join(30)
    assert statuses == [200, 200]
    # both streams ended on the first replica: their slots are back for the second one
    deadline_answers = []
    for _ in range(20):
        answer = chat(second, secret)
        deadline_answers.append(answer.status_code)
        if answer.status_code == 200:
            break
        time.sleep(0.1)
    assert deadline_answers[-1] == 200, deadline_answers


def test_a_key_made_on_one_replica_works_on_the_other_and_its_revocation_follows(
    replicas: list[Gateway],
) -> None:
    first, second = replicas
    _, owner, _ = first.new_user("5")
    made = httpx.post(
        first.base_url + "/api/keys",
        json={"name": "made on the first"},
        headers={"Authorization": f"Bearer {owner}"},
    )
    assert made.status_code == 201, made.text
    secret, key_id = made.json()["secret"], made.json()["id"]
    assert chat(second, secret).status_code == 200  # at once: the other replica looks it up once

    gone = httpx.delete(first.base_url + f"/api/keys/{key_id}", headers={"Authorization": f"Bearer {owner}"})
    assert gone.status_code == 204, gone.text
    revoked_at = time.monotonic()
    while chat(second, secret).status_code == 200:
        assert time.monotonic() - revoked_at < 1.0, "the other replica still took the revoked key after 1 s"
        time.sleep(0.05)
    refused = chat(second, secret)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"


def test_sigkill_of_one_replica_under_load_leaves_a_ledger_that_verifies(replicas: list[Gateway]) -> None:
    first, second = replicas
    secrets_ = [first.new_user("5")[1] for _ in range(3)]
    stop = threading.Event()
    answered = {first.port: 0, second.port: 0}

    def load(gw: Gateway, secret: str) -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    body = {
                        "model": "gpt-mock",
                        "max_tokens": 8,
                        "messages": [{"role": "user", "content": "x"}],
                    }
                    resp = client.post(
                        gw.base_url + "/v1/chat/completions",
                        json=body,
                        headers={"Authorization": f"Bearer {secret}"},
                    )
                except httpx.HTTPError:
                    continue
                if resp.status_code == 200:
                    answered[gw.port] += 1

    workers = [threading.Thread(target=load, args=(gw, s)) for gw in replicas for s in secrets_]
    for t in workers:
        t.start()
    time.sleep(1.5)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    time.sleep(0.5)  # the survivor keeps serving, then flushes its usage
    stop.set()
    for t in workers:
        t.join(15)
    assert answered[first.port] > 0 and answered[second.port] > 0, answered
    time.sleep(1.0)  # two flush intervals of the survivor
    code, report = ledger_verify(second)
    assert code == 0, report
    first.start()  # for the module's other tests


def test_sign_in_failures_count_across_replicas(replicas: list[Gateway]) -> None:
    """Five failures for one account (the default) lock it, however they are spread over replicas."""
    first, second = replicas
    name = "throttled-" + uuid.uuid4().hex[:8]
    first.cli(
        "user", "add", name, "--email", f"{name}@example.com", "--password-stdin", input="a-good-password-1\n"
    )

    def login(gw: Gateway, password: str) -> int:
        body = {"login": name, "password": password}
        return httpx.post(gw.base_url + "/api/auth/login", json=body, timeout=30).status_code

    assert [login(replicas[i % 2], "wrong password!!") for i in range(5)] == [401] * 5
    assert login(first, "wrong password!!") == 429
    assert login(second, "a-good-password-1") == 429  # locked for this address on every replica


def test_mail_limits_count_across_replicas(replicas: list[Gateway]) -> None:
    """Three reset mails per recipient a window (the default), however the requests are spread:
    the fourth is refused on whichever replica it reaches."""
    address = f"reset-{uuid.uuid4().hex[:8]}@example.com"

    def reset(gw: Gateway) -> httpx.Response:
        return httpx.post(gw.base_url + "/api/auth/password-reset", json={"email": address}, timeout=30)

    assert [reset(replicas[i % 2]).status_code for i in range(3)] == [202] * 3
    for gw in replicas:
        refused = reset(gw)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "mail_rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
