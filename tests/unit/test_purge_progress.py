"""The retention purge reports each step with counts, which `model-go retention run` draws with rich
on stderr (stdout keeps only the result), and the bar really draws on a terminal."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from model_go.cli import common
from model_go.storage import repo, usage_repo
from model_go.storage.db import make_engine, migrate
from model_go.storage.metadata import utcnow
from model_go.usage import retention
from tests.support.usage_rows import usage_row


def old_row(user_id: int, n: int, days_old: int) -> dict[str, Any]:
    return usage_row(user_id, f"req_old_{days_old}_{n}", utcnow() - timedelta(days=days_old), model="m")


async def test_purge_reports_every_step(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", pool=False)
    await migrate(engine)
    async with engine.begin() as conn:
        user_id = await repo.create_user(conn, "old", email="old@example.com")
        rows = [old_row(user_id, n, 120) for n in range(12)] + [old_row(user_id, n, 1) for n in range(3)]
        await usage_repo.write_batch(conn, rows, [])
    heard: list[tuple[str, int, int]] = []
    retention.BATCH, saved = 5, retention.BATCH
    try:
        result = await retention.run(engine, 90, lambda *step: heard.append(step))
    finally:
        retention.BATCH = saved
        await engine.dispose()
    assert result.usage_rows == 12
    deleting = [h for h in heard if h[0] == "deleting usage rows"]
    assert deleting == [
        ("deleting usage rows", 0, 12),
        ("deleting usage rows", 5, 12),
        ("deleting usage rows", 10, 12),
        ("deleting usage rows", 12, 12),
    ]
    assert [h[0] for h in heard[len(deleting) :]] == [
        "tidying sessions, mail and tokens",
        "tidying sessions, mail and tokens",
        "purging freed space",
        "purging freed space",
    ]


def test_the_bar_draws_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = io.StringIO()
    monkeypatch.setattr(common, "err", Console(file=terminal, force_terminal=True, width=100))
    with common.progress_on_stderr() as update:
        update("deleting usage rows", 5, 10)
    drawn = terminal.getvalue()
    assert "deleting usage rows" in drawn and "50%" in drawn
