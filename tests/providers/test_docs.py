"""docs/providers.md names every registered provider, every preset's URL, and every channel option
the translators read."""

from __future__ import annotations

import re
from pathlib import Path

from model_go.providers import REGISTRY
from model_go.providers.presets import PRESETS

DOC = Path(__file__).parents[2] / "docs" / "providers.md"
SOURCES = Path(__file__).parents[2] / "src" / "model_go" / "providers"


def test_every_provider_is_documented() -> None:
    text = DOC.read_text()
    missing = [name for name in REGISTRY if f"| `{name}` |" not in text]
    assert not missing, f"undocumented providers: {missing}"


def test_every_preset_url_is_documented() -> None:
    text = DOC.read_text()
    for preset in PRESETS.values():
        assert f"| `{preset.name}` | `{preset.base_url}` | {preset.auth} |" in text, preset.name


def test_every_channel_option_is_documented() -> None:
    read = set()
    for source in SOURCES.glob("*.py"):
        read |= set(re.findall(r"channel\.config\.get\(\"([a-z_]+)\"", source.read_text()))
    assert read, "the pattern no longer finds the options: update this test"
    text = DOC.read_text()
    assert not [option for option in sorted(read) if f"`{option}`" not in text]
