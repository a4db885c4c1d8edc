"""OpenAI-compatible vendors as data (presets.json): a default base URL and an auth style each.
Every preset is a provider name of its own whose wire translator is the openai one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlparse

import orjson

from model_go.providers.openai import OpenAIProvider

AUTH_STYLES = frozenset({"bearer", "none"})
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")
FIELDS = frozenset({"name", "title", "base_url", "auth"})


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    base_url: str
    auth: str

    @property
    def needs_key(self) -> bool:
        return self.auth == "bearer"


def _check(entry: Any, seen: set[str]) -> Preset:
    if (
        not isinstance(entry, dict)
        or set(entry) != FIELDS
        or not all(isinstance(v, str) for v in entry.values())
    ):
        raise ValueError(f"preset {entry!r}: needs exactly the string fields {sorted(FIELDS)}")
    name = entry["name"]
    if not NAME_RE.match(name):
        raise ValueError(f"preset {name!r}: names are lowercase letters, digits, '-' and '_'")
    if name in seen:
        raise ValueError(f"preset {name!r} is defined twice")
    url = urlparse(entry["base_url"])
    local = url.hostname in LOCAL_HOSTS
    if url.scheme != "https" and not (local and url.scheme == "http"):
        raise ValueError(f"preset {name!r}: base_url must be https (plain http only for local servers)")
    if not url.hostname or url.query or url.fragment or entry["base_url"].endswith("/"):
        raise ValueError(f"preset {name!r}: base_url must be a bare URL without a trailing slash")
    if entry["auth"] not in AUTH_STYLES:
        raise ValueError(f"preset {name!r}: auth must be one of {sorted(AUTH_STYLES)}")
    return Preset(name=name, title=entry["title"], base_url=entry["base_url"], auth=entry["auth"])


def parse(text: bytes) -> dict[str, Preset]:
    """Validate a presets document; raises ValueError naming the first problem."""
    doc = orjson.loads(text)
    entries = doc.get("presets") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError("presets.json must hold a non-empty 'presets' array")
    presets: dict[str, Preset] = {}
    for entry in entries:
        preset = _check(entry, set(presets))
        presets[preset.name] = preset
    return presets


def read_file() -> bytes:
    return resources.files("model_go.providers").joinpath("presets.json").read_bytes()


PRESETS: dict[str, Preset] = parse(read_file())


class PresetProvider(OpenAIProvider):
    """The openai translator under the vendor's own provider name."""

    def __init__(self, preset: Preset) -> None:
        self.name = preset.name
        self.preset = preset


def preset_providers() -> dict[str, PresetProvider]:
    return {name: PresetProvider(preset) for name, preset in PRESETS.items()}
