"""Every error a client can see: OpenAI-shaped, the right status, nothing leaked."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support.gateway import Gateway
from tests.support.mock_openai import MockUpstream

FORBIDDEN_IN_ERRORS = (
    UPSTREAM_KEY,
    "internal-gpu-7",
    "127.0.0.1:",
    "Traceback",
    "Incorrect API key provided: sk",
)


def post(
    gw: Gateway,
    body: bytes | dict[str, object],
    key: str | None,
    path: str = "/v1/chat/completions",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if key:
        hdrs["Authorization"] = f"Bearer {key}"
    if isinstance(body, dict):
        return httpx.post(gw.base_url + path, json=body, headers=hdrs, timeout=30)
    return httpx.post(gw.base_url + path, content=body, headers=hdrs, timeout=30)


def assert_error(
    resp: httpx.Response, status: int, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    for secret in FORBIDDEN_IN_ERRORS:
        assert secret not in resp.text
    return error


CHAT: dict[str, object] = {"model": "gpt-mock", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def key(gateway: Gateway) -> str:
    return gateway.new_user("10")[1]


def test_missing_and_wrong_key_are_401(gateway: Gateway) -> None:
    assert_error(post(gateway, CHAT, None), 401, code="missing_api_key")
    assert_error(post(gateway, CHAT, "sk-mg-not-a-real-key"), 401, code="invalid_api_key")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="sk-mg-nope", max_retries=0).models.list()


def test_insufficient_balance_is_402_not_429(gateway: Gateway, upstream: MockUpstream) -> None:
    _, broke, _ = gateway.new_user("0")
    before = upstream.count()
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=broke)  # default retries
    with pytest.raises(openai.APIStatusError) as info:
        # CHAT is the raw JSON body the httpx requests here send too, not the SDK's typed arguments
        client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert info.value.status_code == 402
    assert upstream.count() == before, "a refused request must never reach the upstream"


def test_model_not_allowed_for_key_is_403(gateway: Gateway) -> None:
    _, restricted, _ = gateway.new_user("1", models=["text-embed-mock"])
    assert_error(post(gateway, CHAT, restricted), 403, param="model")


def test_unknown_model_is_404(gateway: Gateway, key: str) -> None:
    assert_error(
        post(gateway, {**CHAT, "model": "no-such-model"}, key), 404, code="model_not_found", param="model"
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b"", None),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": 42, "messages": []}, "model"),
        ({"model": "gpt-mock", "messages": "hello"}, "messages"),
        ({"model": "gpt-mock", "messages": []}, "messages"),
        ({"model": "gpt-mock", "messages": [{"content": "no role"}]}, "messages[0]"),
        ({**CHAT, "stream": "yes"}, "stream"),
        ({**CHAT, "max_tokens": -5}, "max_tokens"),
        ({**CHAT, "max_tokens": True}, "max_tokens"),
        ({**CHAT, "stream_options": "on"}, "stream_options"),
        ({**CHAT, "api_base": "http://evil.example"}, "api_base"),
        (
            {**CHAT, "user_config": {"model_list": [{"litellm_params": {"api_base": "http://x"}}]}},
            "user_config",  # itself a proxy-control field (LiteLLM)
        ),
        ({**CHAT, "metadata": {"base_url": "http://169.254.169.254"}}, "metadata.base_url"),
        ({**CHAT, "extra": {"api_key": "sk-other"}}, "extra.api_key"),
    ],
)
def test_bad_requests_are_400_naming_the_param(
    gateway: Gateway, key: str, body: bytes | dict[str, object], param: str | None
) -> None:
    assert_error(post(gateway, body, key), 400, param=param)


def test_tool_schemas_may_use_any_property_name(gateway: Gateway, key: str) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "fetch",
                "parameters": {
                    "type": "object",
                    "properties": {"url": {"type": "string"}, "base_url": {"type": "string"}},
                },
            },
        }
    ]
    assert post(gateway, {**CHAT, "tools": tools}, key).status_code == 200


def test_embeddings_input_is_validated(gateway: Gateway, key: str) -> None:
    assert_error(
        post(gateway, {"model": "text-embed-mock", "input": {"a": 1}}, key, "/v1/embeddings"),
        400,
        param="input",
    )


def test_oversize_body_is_413(gateway: Gateway, key: str) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 70_000}]}  # limit is 64 KiB in the fixture
    assert_error(post(gateway, big, key), 413)
    chunked = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        timeout=30,
        content=iter(
            [b'{"model": "gpt-mock", "messages": [{"role":"user","content":"', b"y" * 70_000, b'"}]}']
        ),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert_error(chunked, 413)


def test_unknown_route_and_wrong_method_are_openai_shaped(gateway: Gateway, key: str) -> None:
    assert_error(httpx.get(gateway.base_url + "/v1/nope", timeout=10), 404)
    assert_error(httpx.get(gateway.base_url + "/v1/chat/completions", timeout=10), 405)


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("mock-500", 502, "upstream_error"),
        ("mock-401", 502, "upstream_auth_failed"),
        ("mock-429", 429, "upstream_rate_limited"),
        ("mock-400", 400, "bad_thing"),
        ("mock-redirect", 502, "upstream_error"),
    ],
)
def test_upstream_errors_are_mapped_never_relayed(
    gateway: Gateway, upstream: MockUpstream, key: str, model: str, status: int, code: str
) -> None:
    for stream in (False, True):
        resp = post(gateway, {**CHAT, "model": model, "stream": stream}, key)
        assert_error(resp, status, code=code)
        if status == 429:
            assert resp.headers["Retry-After"] == "2"
    assert upstream.leaked == 0, "a redirect was followed"


def test_upstream_unreachable_is_503(gateway: Gateway, key: str) -> None:
    gateway.cli(
        "channel",
        "add",
        "dead",
        "--provider",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--models",
        "dead-model",
    )
    gateway.cli("price", "set", "dead-model", "--input", "1", "--output", "1")
    _, fresh, user_id = gateway.new_user("1")
    import time

    deadline = time.monotonic() + 5
    resp = post(gateway, {**CHAT, "model": "dead-model"}, fresh)
    while resp.status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.1)
        resp = post(gateway, {**CHAT, "model": "dead-model"}, fresh)
    assert_error(resp, 503, code="upstream_unavailable")
    rows = gateway.wait_for_usage(user_id, 1)
    assert rows[-1].cost_micros == 0, "an upstream failure before any token bills nothing"
    assert gateway.balance(user_id) == 1_000_000


def test_browsers_get_an_html_404_page_and_apis_keep_json(gateway: Gateway) -> None:
    html = {"Accept": "text/html,application/xhtml+xml"}
    page = httpx.get(gateway.base_url + "/no-such-page", headers=html, timeout=10)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "Page not found" in page.text and "default-src 'self'" in page.headers["content-security-policy"]
    for path in ("/v1/nope", "/api/nope"):
        assert httpx.get(gateway.base_url + path, headers=html, timeout=10).json()["error"]["message"]
    assert_error(httpx.get(gateway.base_url + "/no-such-page", timeout=10), 404)
