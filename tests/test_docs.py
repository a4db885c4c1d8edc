"""The README is the operator's manual: every setting, command and provider must be in it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from model_go.cli import app
from model_go.providers import REGISTRY
from model_go.settings import Settings

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    documented = set(re.findall(r"`(MODELGO_[A-Z0-9_]+)`", README))
    defined = {f"MODELGO_{name.upper()}" for name in Settings.model_fields}
    assert defined - documented == set(), "settings missing from README.md"
    assert documented - defined == set(), "README.md documents settings that do not exist"


def _commands(group: Any, prefix: str) -> list[str]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if hasattr(command, "commands"):  # a sub-group (typer vendors its own click classes)
            found.extend(_commands(command, path))
        else:
            found.append(path)
    return found


def test_every_cli_command_is_documented() -> None:
    root = typer.main.get_command(app)
    commands = _commands(root, "model-go")
    assert len(commands) >= 15
    missing = [c for c in commands if f"`{c}" not in README]
    assert missing == []


def test_every_provider_is_documented() -> None:
    missing = [name for name in REGISTRY if f"`{name}`" not in README]
    assert missing == []
