"""Requests per minute per key (MODELGO_DEFAULT_RPM here), through the official SDK: the allowance
comes at once, the next request is 429 in OpenAI's shape with Retry-After and x-ratelimit headers,
and a refused request reaches no upstream and costs nothing. Keys are counted apart."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.conftest import add_mock_channel, make_gateway
from tests.support.gateway import Gateway, drop_pg_database
from tests.support.mock_openai import MockUpstream

RPM = 3


@pytest.fixture(scope="module")
def limited(
    backend: str, upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gw = make_gateway(tmp_path_factory.mktemp(f"rpm-{backend}"), backend, MODELGO_DEFAULT_RPM=str(RPM))
    add_mock_channel(gw, upstream)
    gw.start()
    yield gw
    gw.stop()
    if gw.database_url:
        drop_pg_database(gw.database_url)


def test_the_allowance_then_429_with_retry_after(limited: Gateway, upstream: MockUpstream) -> None:
    _, key, user_id = limited.new_user("1")
    client = openai.OpenAI(base_url=limited.base_url + "/v1", api_key=key, max_retries=0)
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
    left = []
    for _ in range(RPM):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-mock", messages=messages, max_tokens=5
        )
        left.append(raw.headers["x-ratelimit-remaining-requests"])
        assert raw.headers["x-ratelimit-limit-requests"] == str(RPM)
    assert left == ["2", "1", "0"]
    before = upstream.count("gpt-mock")
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-mock", messages=messages, max_tokens=5)
    error = refused.value
    assert error.status_code == 429 and error.code == "rate_limit_exceeded"
    assert 1 <= int(error.response.headers["Retry-After"]) <= 60 // RPM
    assert upstream.count("gpt-mock") == before
    assert len(limited.wait_for_usage(user_id, RPM)) == RPM  # the refusal has no usage row and no cost
    _, other_key, _ = limited.new_user("1")
    other = openai.OpenAI(base_url=limited.base_url + "/v1", api_key=other_key, max_retries=0)
    assert other.chat.completions.create(model="gpt-mock", messages=messages, max_tokens=5).choices
