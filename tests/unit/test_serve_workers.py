"""`model-go serve --workers N`: when more than one worker is refused, and what the refusal says."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from model_go.cli import app
from model_go.cli.serve import workers_problem
from model_go.settings import Settings


def test_more_than_one_worker_needs_redis() -> None:
    problem = workers_problem(Settings(redis_url=None), 3)
    assert problem is not None
    assert problem.startswith("--workers 3 needs MODELGO_REDIS_URL")
    assert "they would overspend" in problem and "limits 3 times over" in problem
    assert "MODELGO_REDIS_URL=redis://HOST:6379/0, or run one worker" in problem


def test_workers_with_redis_are_allowed_on_postgresql_and_sqlite() -> None:
    redis = "redis://127.0.0.1:6379/0"
    assert workers_problem(Settings(redis_url=redis), 4) is None
    assert workers_problem(Settings(redis_url=redis, database_url="postgresql+asyncpg://h/db"), 4) is None


def test_each_worker_needs_a_metrics_port_of_its_own() -> None:
    redis = "redis://127.0.0.1:6379/0"
    assert workers_problem(Settings(redis_url=redis, metrics_port=65534), 2) is None
    problem = workers_problem(Settings(redis_url=redis, metrics_port=65534), 3)
    assert problem is not None and "choose a lower MODELGO_METRICS_PORT" in problem


def test_the_command_refuses_before_opening_the_database(tmp_path: Path) -> None:
    env = {"MODELGO_DATA_DIR": str(tmp_path), "MODELGO_REDIS_URL": None, "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["serve", "--workers", "2"], env=env)
    assert result.exit_code == 1
    assert "error: --workers 2 needs MODELGO_REDIS_URL" in " ".join(result.stderr.split())
    assert list(tmp_path.iterdir()) == []  # no database, no generated secret
