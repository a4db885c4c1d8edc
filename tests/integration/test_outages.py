"""PostgreSQL unreachable under a running server, on one node and as a replica sharing Redis: the
server reaches the database through a TCP proxy this module cuts and restores, so PostgreSQL itself
keeps running for everyone else on the machine.

While the database is cut off:
- /v1 keeps serving the keys it holds, from the balances it holds; usage waits in memory, and past
  MODELGO_USAGE_MAX_PENDING_ROWS further requests get 503 usage_backlog (nothing charged);
- a key the server does not know yet, and the management API, get 503 database_unavailable;
- /readyz says degraded (still 200: taking every replica out would stop /v1 too);
- the log says so occasionally, without tracebacks.
When it is back, without a restart: every waiting row is written once, the ledger verifies, and the
balance is what the rows say.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.billing.ledger_checks import ledger_verify
from tests.conftest import add_mock_channel
from tests.support.gateway import Gateway, create_pg_database, drop_pg_database, postgres_available
from tests.support.mock_openai import MockUpstream
from tests.support.replicas import REDIS_URL, redis_available
from tests.support.tcp_proxy import TcpProxy

MAX_PENDING = 10


@pytest.fixture(params=["one node", "replica with Redis"])
def cut_off(
    request: pytest.FixtureRequest, upstream: MockUpstream, tmp_path: Path
) -> Iterator[tuple[Gateway, TcpProxy]]:
    if not postgres_available() or not redis_available():
        pytest.fail("needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (.ci/run starts both)")
    proxy = TcpProxy(5432).start()
    url = create_pg_database()
    env = {"MODELGO_USAGE_MAX_PENDING_ROWS": str(MAX_PENDING)}
    if request.param == "replica with Redis":
        env |= {"MODELGO_REDIS_URL": REDIS_URL, "MODELGO_REDIS_PREFIX": f"test-{uuid.uuid4().hex[:8]}:"}
    gw = Gateway(data_dir=tmp_path, database_url=url.replace(":5432/", f":{proxy.port}/"), extra_env=env)
    add_mock_channel(gw, upstream, ["gpt-mock"])
    gw.start()
    yield gw, proxy
    gw.stop()
    proxy.stop()
    drop_pg_database(url)


def chat(gw: Gateway, secret: str) -> httpx.Response:
    body = {"model": "gpt-mock", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def test_an_unreachable_database_keeps_v1_serving_and_loses_no_usage(
    cut_off: tuple[Gateway, TcpProxy],
) -> None:
    gw, proxy = cut_off
    _, secret, user_id = gw.new_user("5")
    gw.wait_key_live(secret)
    assert chat(gw, secret).status_code == 200
    gw.wait_for_usage(user_id, 1)
    starting_log = len(gw.output())

    proxy.cut()
    served = [chat(gw, secret).status_code for _ in range(MAX_PENDING)]
    assert served == [200] * MAX_PENDING
    refused = chat(gw, secret)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert refused.json()["error"]["code"] == "usage_backlog"

    unknown = chat(gw, "sk-mg-" + "x" * 40)  # a key the server has not seen: cannot be checked
    assert unknown.status_code == 503 and unknown.json()["error"]["code"] == "database_unavailable"
    api = httpx.get(gw.base_url + "/api/keys", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    assert api.status_code == 503 and api.headers["retry-after"] == "2"
    assert api.json()["error"] == {
        "message": "The database cannot be reached for a moment; nothing was changed. Retry shortly.",
        "type": "api_error",
        "param": None,
        "code": "database_unavailable",
    }
    ready = httpx.get(gw.base_url + "/readyz", timeout=30)
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    time.sleep(1.2)  # a few failed flushes and reloads
    during = gw.output()[starting_log:]
    assert "the database is unreachable" in during
    assert "Traceback" not in during

    proxy.restore()
    rows = gw.wait_for_usage(user_id, 1 + MAX_PENDING)  # refused before anything: no row
    assert [r.status_code for r in rows] == [200] * (1 + MAX_PENDING)
    assert chat(gw, secret).status_code == 200
    assert httpx.get(gw.base_url + "/readyz", timeout=30).json()["status"] == "ready"
    rows = gw.wait_for_usage(user_id, 1 + MAX_PENDING + 1)
    assert gw.balance(user_id) == 5_000_000 - sum(r.cost_micros for r in rows)
    code, report = ledger_verify(gw)
    assert code == 0, report
