"""Request validation: the params we name, and the redirect fields we refuse."""

from __future__ import annotations

import pytest

from model_go.errors import InvalidRequest
from model_go.wire.openai import parse_json_object, validate_chat, validate_embeddings

OK = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_valid_chat() -> None:
    assert validate_chat(
        {**OK, "max_tokens": 5, "n": 2, "stream": True, "stream_options": {"include_usage": True}}
    ) == ("m", True, True, 5, 2)
    assert validate_chat({**OK, "max_completion_tokens": 9, "max_tokens": 5})[3] == 9


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**OK, "n": 0}, "n"),
        ({**OK, "n": 500}, "n"),
        (
            {**OK, "temperature": 1, "nested": {"deeper": [{"azure_endpoint": "x"}]}},
            "nested.deeper[0].azure_endpoint",
        ),
        ({**OK, "base_url": "http://x"}, "base_url"),
    ],
)
def test_invalid_chat_names_param(body: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_chat(body)
    assert info.value.param == param


def test_user_content_may_contain_any_keys() -> None:
    body = {
        **OK,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "url": "y"}]}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"schema": {"properties": {"api_key": {}}}},
        },
    }
    validate_chat(body)


def test_absurd_nesting_is_refused_not_crashing() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(100):
        node["k"] = {}
        node = node["k"]  # type: ignore[assignment]
    with pytest.raises(InvalidRequest):
        validate_chat({**OK, "extra": deep})


def test_json_parse_errors() -> None:
    for raw in (b"", b"null", b"[]", b"{", b"\xff\xfe"):
        with pytest.raises(InvalidRequest):
            parse_json_object(raw)


def test_embeddings_input_shapes() -> None:
    assert validate_embeddings({"model": "e", "input": "x"}) == "e"
    assert validate_embeddings({"model": "e", "input": [[1, 2], [3]]}) == "e"
    for bad in ({"model": "e"}, {"model": "e", "input": []}, {"model": "e", "input": [{"a": 1}]}):
        with pytest.raises(InvalidRequest):
            validate_embeddings(bad)
