"""The SQLite database, its WAL and shared-memory files and their directory are private to the server user."""

from __future__ import annotations

import stat
from pathlib import Path

from model_go.storage.db import make_private
from tests.conftest import make_gateway


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_directory_and_file_are_private(tmp_path: Path) -> None:
    database = tmp_path / "new" / "data" / "model-go.db"
    make_private(database)
    assert mode(database.parent) == 0o700
    assert mode(database) == 0o600


def test_a_shared_sticky_directory_is_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    make_private(shared / "model-go.db")
    assert mode(shared) == 0o1777
    assert mode(shared / "model-go.db") == 0o600


def test_the_server_keeps_its_files_private_and_tightens_old_ones(tmp_path: Path) -> None:
    data = tmp_path / "data"
    gw = make_gateway(data, "sqlite", MODELGO_DEMO="false")
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # what an older version (or the umask) left
    gw.start()
    try:
        database = data / "model-go.db"
        assert mode(data) == 0o700
        for name in ("model-go.db", "model-go.db-wal", "model-go.db-shm", "secret_key"):
            assert mode(data / name) == 0o600, name
    finally:
        gw.stop()
    data.chmod(0o755)
    for path in data.glob("model-go.db*"):
        path.chmod(0o644)
    gw.start()
    try:
        assert mode(data) == 0o700
        for path in data.glob("model-go.db*"):
            assert mode(path) == 0o600, path.name
        assert mode(database) == 0o600
    finally:
        gw.stop()
