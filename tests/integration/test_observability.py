"""What the operator sees: an x-request-id on every response, x-modelgo-overhead-ms on the relay's,
Prometheus metrics behind a token or on an internal port (and nowhere without either), and one JSON
log line per request with ids and counts but never a prompt, a reply or a key.

Logs, metrics and request ids do not touch the database: these run on SQLite only.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.conftest import UPSTREAM_KEY, add_mock_channel, make_gateway
from tests.support.gateway import Gateway, free_port
from tests.support.mock_openai import MockUpstream

TOKEN = "metrics-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def ops_gw(upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = make_gateway(
        tmp_path_factory.mktemp("ops"),
        "sqlite",
        MODELGO_METRICS_TOKEN=TOKEN,
        MODELGO_METRICS_PORT=str(free_port()),
    )
    add_mock_channel(gw, upstream, ["gpt-mock", "mock-500", "mock-slow-stream"])
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def plain_gw(upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = make_gateway(tmp_path_factory.mktemp("plain"), "sqlite", MODELGO_LOG_FORMAT="text")
    add_mock_channel(gw, upstream, ["gpt-mock"])
    gw.start()
    yield gw
    gw.stop()


def client(gw: Gateway, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=secret, max_retries=0)


def log_lines(gw: Gateway) -> list[dict[str, Any]]:
    lines = []
    for line in gw.output().splitlines():
        if line.startswith("{"):
            lines.append(orjson.loads(line))
    return lines


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    total, found = 0.0, False
    for line in text.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total, found = total + float(match.group(3)), True
    assert found, f"no {name} sample with {labels}"
    return total


def scrape(gw: Gateway) -> str:
    resp = httpx.get(gw.base_url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return resp.text


def test_relay_answers_carry_request_id_and_overhead(ops_gw: Gateway) -> None:
    _, secret, _ = ops_gw.new_user("5")
    raw = client(ops_gw, secret).chat.completions.with_raw_response.create(
        model="gpt-mock", messages=[{"role": "user", "content": "hello"}], max_tokens=8
    )
    assert re.fullmatch(r"req_[0-9a-f]{22}", raw.headers["x-request-id"])
    overhead = float(raw.headers["x-modelgo-overhead-ms"])
    assert 0 <= overhead < 1000

    with client(ops_gw, secret).chat.completions.with_streaming_response.create(
        model="gpt-mock", messages=[{"role": "user", "content": "hello"}], max_tokens=8, stream=True
    ) as streamed:
        assert float(streamed.headers["x-modelgo-overhead-ms"]) >= 0
        assert streamed.headers["x-request-id"].startswith("req_")
        list(streamed.iter_lines())

    # errors too: the relay's, a /v1 path it does not know, the management API, health, a 413
    for resp in [
        httpx.post(ops_gw.base_url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-mg-nope"}),
        httpx.get(ops_gw.base_url + "/v1/nowhere"),
        httpx.get(ops_gw.base_url + "/api/me"),
        httpx.get(ops_gw.base_url + "/healthz"),
        httpx.post(ops_gw.base_url + "/api/auth/login", content=b"x" * (2 * 1024 * 1024)),
    ]:
        assert resp.headers.get("x-request-id", "").startswith("req_"), (resp.url, resp.status_code)
    assert (
        "x-modelgo-overhead-ms"
        in httpx.post(
            ops_gw.base_url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-mg-nope"}
        ).headers
    )


def test_metrics_need_the_token_and_count_requests(ops_gw: Gateway) -> None:
    username, secret, _ = ops_gw.new_user("5")
    prompt = "metrics-prompt-" + uuid.uuid4().hex
    before = scrape(ops_gw)
    ok_before = (
        metric(before, "modelgo_requests_total", route="chat", model="gpt-mock", status="200")
        if 'model="gpt-mock"' in before
        else 0.0
    )
    sdk = client(ops_gw, secret)
    for _ in range(3):
        sdk.chat.completions.create(
            model="gpt-mock", messages=[{"role": "user", "content": prompt}], max_tokens=8
        )
    with pytest.raises(openai.APIStatusError):
        sdk.chat.completions.create(
            model="mock-500", messages=[{"role": "user", "content": prompt}], max_tokens=8
        )

    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]:
        refused = httpx.get(ops_gw.base_url + "/metrics", headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    text = scrape(ops_gw)
    assert (
        metric(text, "modelgo_requests_total", route="chat", model="gpt-mock", status="200") == ok_before + 3
    )
    assert metric(text, "modelgo_requests_total", route="chat", model="mock-500") >= 1
    assert metric(text, "modelgo_request_duration_seconds_count", route="chat") >= 4
    assert metric(text, "modelgo_time_to_first_token_seconds_count", route="chat") >= 3
    assert metric(text, "modelgo_overhead_seconds_count", route="chat") >= 3
    assert metric(text, "modelgo_tokens_total", model="gpt-mock", kind="completion") > 0
    assert metric(text, "modelgo_cost_usd_total", model="gpt-mock") > 0
    assert metric(text, "modelgo_upstream_attempts_total", outcome="failed") >= 1
    assert metric(text, "modelgo_upstream_attempts_total", outcome="ok") >= 3
    assert 'modelgo_circuit_open{channel_id="' in text and 'model="mock-500"' in text
    assert metric(text, "modelgo_usage_queue_rows") >= 0
    assert metric(text, "modelgo_usage_flush_lag_seconds") >= 0
    # nothing personal in any label: no user, key, prompt or address
    for secret_text in (username, secret, prompt, "127.0.0.1", UPSTREAM_KEY):
        assert secret_text not in text

    # the internal port serves the same registry, without a token
    port = ops_gw.env["MODELGO_METRICS_PORT"]
    internal = httpx.get(f"http://127.0.0.1:{port}/metrics")
    assert internal.status_code == 200 and "modelgo_requests_total" in internal.text


def test_one_json_line_per_request_without_text_or_secrets(ops_gw: Gateway) -> None:
    _, secret, user_id = ops_gw.new_user("5")
    prompt = "log-prompt-" + uuid.uuid4().hex
    raw = client(ops_gw, secret).chat.completions.with_raw_response.create(
        model="gpt-mock", messages=[{"role": "user", "content": prompt}], max_tokens=8
    )
    request_id = raw.headers["x-request-id"]
    deadline = time.monotonic() + 5
    mine: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        mine = [line for line in log_lines(ops_gw) if line.get("request_id") == request_id]
        if mine:
            break
        time.sleep(0.05)
    assert len(mine) == 1, mine
    line = mine[0]
    assert line["level"] == "INFO" and line["logger"] == "model_go.relay" and line["ts"].endswith("Z")
    assert line["status"] == 200 and line["user_id"] == user_id and line["model"] == "gpt-mock"
    assert isinstance(line["key_id"], int) and isinstance(line["channel_id"], int)
    assert line["completion_tokens"] > 0 and line["cost_usd"] > 0 and line["latency_ms"] > 0
    assert line["overhead_ms"] >= 0
    output = ops_gw.output()
    assert prompt not in output and secret not in output and TOKEN not in output
    content = raw.parse().choices[0].message.content
    assert content is not None and content not in output
    # every log line is a JSON object, uvicorn's own too; stdout holds only the start-up banner
    banner = ("First start:", "and this API key", "sk-mg-", "model-go listening on")
    others = [line for line in output.splitlines() if line.strip() and not line.startswith(banner)]
    assert others and all(line.startswith("{") for line in others), [o for o in others if o[0] != "{"]


def test_without_token_or_port_there_are_no_metrics_and_text_logs(plain_gw: Gateway, tmp_path: Path) -> None:
    assert httpx.get(plain_gw.base_url + "/metrics").status_code == 404
    assert httpx.get(plain_gw.base_url + "/metrics", headers={"Authorization": "Bearer x"}).status_code == 404
    _, secret, _ = plain_gw.new_user("5")
    raw = client(plain_gw, secret).chat.completions.with_raw_response.create(
        model="gpt-mock", messages=[{"role": "user", "content": "hi"}], max_tokens=8
    )
    request_id = raw.headers["x-request-id"]
    deadline = time.monotonic() + 5
    while request_id not in plain_gw.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(line for line in plain_gw.output().splitlines() if request_id in line)
    assert re.match(rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} INFO model_go.relay: {request_id} ", line)
