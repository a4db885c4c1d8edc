"""The vendor presets file: its schema, and each preset being a usable provider."""

from __future__ import annotations

from urllib.parse import urlparse

import orjson
import pytest

from model_go.providers import REGISTRY
from model_go.providers.openai import OpenAIProvider
from model_go.providers.presets import PRESETS, PresetProvider, parse, read_file

REQUIRED = {
    "deepseek",
    "groq",
    "mistral",
    "together",
    "fireworks",
    "openrouter",
    "xai",
    "ollama",
    "vllm",
    "lmstudio",
}
BUILT_INS = {"openai", "mock", "anthropic", "gemini", "azure"}


def test_the_shipped_file_follows_the_schema() -> None:
    entries = orjson.loads(read_file())["presets"]
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), "preset names must be unique"
    assert set(names) >= REQUIRED
    for entry in entries:
        assert set(entry) == {"name", "title", "base_url", "auth"}
        url = urlparse(entry["base_url"])
        local = url.hostname in ("localhost", "127.0.0.1", "::1")
        assert url.scheme == "https" or (local and url.scheme == "http"), entry["name"]
        assert entry["auth"] in ("bearer", "none")
        assert (entry["auth"] == "none") == local, "hosted vendors need keys; local servers do not"
    assert parse(read_file()) == PRESETS


def test_every_preset_is_a_provider_speaking_openai() -> None:
    assert not set(PRESETS) & BUILT_INS, "a preset must not shadow a built-in provider"
    for name in PRESETS:
        provider = REGISTRY[name]
        assert isinstance(provider, PresetProvider) and isinstance(provider, OpenAIProvider)
        assert provider.name == name and not provider.local


def _doc(*entries: dict[str, str]) -> bytes:
    return orjson.dumps({"presets": list(entries)})


GOOD = {"name": "acme", "title": "Acme", "base_url": "https://api.acme.test/v1", "auth": "bearer"}


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ([GOOD, GOOD], "defined twice"),
        ([{**GOOD, "base_url": "http://api.acme.test/v1"}], "must be https"),
        ([{**GOOD, "base_url": "ftp://localhost/v1"}], "must be https"),
        ([{**GOOD, "auth": "basic"}], "auth must be one of"),
        ([{**GOOD, "base_url": "https://api.acme.test/v1/"}], "trailing slash"),
        ([{k: v for k, v in GOOD.items() if k != "auth"}], "needs exactly"),
        ([{**GOOD, "name": "Acme Corp"}], "names are lowercase"),
        ([], "non-empty"),
    ],
)
def test_the_validator_refuses_bad_entries(entries: list[dict[str, str]], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse(_doc(*entries))


def test_local_servers_may_use_plain_http() -> None:
    assert (
        parse(_doc({**GOOD, "base_url": "http://localhost:9000/v1", "auth": "none"}))["acme"].needs_key
        is False
    )
