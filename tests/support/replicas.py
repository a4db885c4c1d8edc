"""Two `model-go serve` replicas for a test module: one fresh PostgreSQL database, one Redis (a key
prefix of their own) and one data directory (so they share the server secret, and append to one log)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import redis

from tests.support.gateway import Gateway, create_pg_database, drop_pg_database, postgres_available

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_available(url: str = REDIS_URL) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@contextmanager
def two_replicas(
    tmp_path_factory: pytest.TempPathFactory,
    prepare: Callable[[Gateway], None],
    *,
    redis_url: str = REDIS_URL,
    env: dict[str, str] | None = None,
) -> Iterator[list[Gateway]]:
    """Started after `prepare(first)` (channels, prices) ran against the new database; stopped and
    the database dropped at the end."""
    if not postgres_available() or not redis_available(redis_url):
        pytest.fail("replicas need PostgreSQL on 127.0.0.1:5432 and Redis (.ci/run starts both)")
    url = create_pg_database()
    shared = tmp_path_factory.mktemp("replicas")
    settings = {"MODELGO_REDIS_URL": redis_url, "MODELGO_REDIS_PREFIX": f"test-{uuid.uuid4().hex[:8]}:"}
    settings |= env or {}
    first = Gateway(data_dir=shared, database_url=url, extra_env=dict(settings))
    second = Gateway(data_dir=shared, database_url=url, extra_env=dict(settings))
    prepare(first)
    first.start()
    second.start()
    try:
        yield [first, second]
    finally:
        first.stop()
        second.stop()
        drop_pg_database(url)
