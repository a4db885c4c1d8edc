"""Shared fixtures: a mock upstream, and the real gateway on SQLite and (where reachable) PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

# `model-go` commands run in this process (Gateway.cli): rich sizes the CLI's consoles from COLUMNS
# when they are created, and pytest-xdist's workers start with COLUMNS=80, which truncates the tables
# the tests read. Set before anything imports model_go.cli.
os.environ["COLUMNS"] = "200"

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.security import KeyRing
from model_go.services import channels
from model_go.storage import repo
from tests.support.gateway import Gateway, create_pg_database, drop_pg_database, postgres_available
from tests.support.mock_openai import MockUpstream

ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
UPSTREAM_KEY = "sk-upstream-SECRET-123"
MOCK_MODELS = (
    "gpt-mock",
    "mock-slow-stream",
    "mock-drop",
    "mock-silent",
    "mock-nousage",
    "mock-500",
    "mock-401",
    "mock-429",
    "mock-400",
    "mock-redirect",
    "mock-long",
    "mock-overrun",
    "mock-image",
    "text-embed-mock",
)


async def _price_all(conn: AsyncConnection, _keyring: KeyRing) -> None:
    """$1 per 1M input tokens, $2 per 1M output, $0.50 per 1M cached input."""
    for model in MOCK_MODELS:
        await repo.set_price(
            conn, model, input_per_1m=1_000_000, output_per_1m=2_000_000, cached_input_per_1m=500_000
        )


def add_mock_channel(gw: Gateway, upstream: MockUpstream, models: Sequence[str] = MOCK_MODELS) -> None:
    """Before start: a channel named `mock` to the mock upstream (with a key), and every mock price.
    Through the channel service in this process, as `model-go channel add` does (whose own path
    test_cli.py covers): a CLI process per module costs seconds of CPU on a loaded CI box."""

    async def add(conn: AsyncConnection, keyring: KeyRing) -> None:
        await channels.add(
            conn,
            keyring,
            name="mock",
            provider="openai",
            base_url=upstream.base_url,
            models=list(models),
            api_key=UPSTREAM_KEY,
        )

    gw.db(add)
    gw.db(_price_all)


@pytest.fixture(scope="session")
def upstream() -> Iterator[MockUpstream]:
    mock = MockUpstream().start()
    yield mock
    mock.stop()


def _backends() -> list[object]:
    return ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session", params=_backends())
def backend(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    if name == "postgres" and not postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432, and CI must test it")
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432: skipping the PostgreSQL run")
    return name


def make_gateway(tmp: Path, backend: str, **env: str) -> Gateway:
    url = create_pg_database() if backend == "postgres" else None
    return Gateway(data_dir=tmp, database_url=url, extra_env=env)


@pytest.fixture(scope="module")
def gateway(
    backend: str, upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """One running server per test module and backend, with a channel to the mock upstream."""
    gw = make_gateway(
        tmp_path_factory.mktemp(f"gw-{backend}"),
        backend,
        MODELGO_KEEPALIVE_SECONDS="0.3",
        MODELGO_MAX_BODY_BYTES="65536",
    )
    add_mock_channel(gw, upstream)
    gw.start()
    yield gw
    gw.stop()
    if gw.database_url:
        drop_pg_database(gw.database_url)
