"""docs/api.md is the contract the dashboard and customers script against: every /api route is in it."""

from __future__ import annotations

import re
from pathlib import Path

from model_go.app import create_app
from model_go.settings import Settings

DOC = (Path(__file__).parent.parent.parent / "docs" / "api.md").read_text()


def _normal(text: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", text)


def test_every_api_route_is_documented(tmp_path: Path) -> None:
    schema = create_app(Settings(data_dir=tmp_path)).openapi()
    documented = _normal(DOC)
    routes = [(m.upper(), p) for p, ops in schema["paths"].items() if p.startswith("/api/") for m in ops]
    assert len(routes) > 40
    missing = [f"{m} {p}" for m, p in routes if f"{m} {_normal(p)}" not in documented]
    assert missing == []
