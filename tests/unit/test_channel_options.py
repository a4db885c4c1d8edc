"""Channel options and model maps as the command line writes them (KEY=VALUE, PUBLIC=UPSTREAM)."""

from __future__ import annotations

import pytest

from model_go.errors import InvalidRequest
from model_go.services.channels import parse_config, parse_model_map


def test_config_values_are_json_when_they_parse() -> None:
    assert parse_config(
        ["default_max_tokens=512", "note=plain text", 'deployments={"a": "b"}', "empty="]
    ) == {
        "default_max_tokens": 512,
        "note": "plain text",
        "deployments": {"a": "b"},
        "empty": "",
    }


@pytest.mark.parametrize("item", ["novalue", "=x", " =x"])
def test_config_needs_a_key(item: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_config([item])
    assert caught.value.param == "config" and item in caught.value.message


def test_model_map_strips_and_needs_both_sides() -> None:
    assert parse_model_map([" gpt-4o = prod-4o "]) == {"gpt-4o": "prod-4o"}
    for item in ("gpt-4o", "gpt-4o=", "=prod"):
        with pytest.raises(InvalidRequest) as caught:
            parse_model_map([item])
        assert caught.value.param == "model_map"
