"""Run the real `model-go serve` in a subprocess on a loopback port, against a real database."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.money import usd_to_micros
from model_go.security import KeyRing
from model_go.settings import Settings
from model_go.storage import repo
from model_go.storage.db import make_engine, migrate

T = TypeVar("T")


@dataclass(frozen=True)
class CliResult:
    """What one `model-go` command did, as subprocess.CompletedProcess names it."""

    returncode: int
    stdout: str
    stderr: str


PG_ADMIN_URL = os.environ.get("MODELGO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_pg_database() -> str:
    name = "modelgo_" + uuid.uuid4().hex[:12]
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Gateway:
    data_dir: Path
    database_url: str | None
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    serve_args: tuple[str, ...] = ()  # after `model-go serve`, e.g. ("--workers", "2")
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELGO_")}
        env.update(MODELGO_DATA_DIR=str(self.data_dir), MODELGO_PORT=str(self.port), MODELGO_HOST="127.0.0.1")
        if self.database_url:
            env["MODELGO_DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        return env

    def settings(self) -> Settings:
        kwargs: dict[str, Any] = {"data_dir": self.data_dir}
        if self.database_url:
            kwargs["database_url"] = self.database_url
        return Settings(**kwargs)

    def start(self, timeout: float = 120) -> Gateway:  # generous: CI machines can be loaded
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "model_go", "serve", *self.serve_args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.output()}")
            try:
                if httpx.get(self.base_url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become ready:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        code = self.proc.returncode
        self.proc = None
        return code

    def stop_gracefully(self) -> None:
        """SIGTERM, then check the server finished its shutdown (uvicorn re-raises the signal)."""
        code = self.stop(signal.SIGTERM)
        assert code in (0, -signal.SIGTERM), f"server exited with {code}"
        assert "Application shutdown complete" in self.output()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cli(
        self, *args: str, input: str | None = None, check: bool = True, process: bool = False
    ) -> CliResult:
        """Run `model-go ARGS` against this gateway's database and data directory.

        In this process by default, through click's test runner with the gateway's environment (a
        `model-go` process costs ~2.7 s of CPU in imports, and the suite runs ~170 of them); with
        `process=True` as a real `python -m model_go` child, for the tests of the entry point
        itself. An exception that escapes a command lands in `stderr` with its traceback, as the
        process would print it, so "no traceback" assertions hold in both modes."""
        result = self._cli_process(args, input) if process else self._cli_in_process(args, input)
        if check and result.returncode != 0:
            raise AssertionError(f"model-go {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def _cli_process(self, args: tuple[str, ...], input: str | None) -> CliResult:
        done = subprocess.run(
            [sys.executable, "-m", "model_go", *args],
            env={**self.env, "COLUMNS": "200"},
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)

    def _cli_in_process(self, args: tuple[str, ...], input: str | None) -> CliResult:
        from typer.testing import CliRunner

        from model_go.cli import app

        # Unset the MODELGO_ variables this process may have that the gateway's environment lacks.
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MODELGO_")}
        env.update({k: v for k, v in self.env.items() if k.startswith("MODELGO_")}, COLUMNS="200")
        outcome: list[CliResult] = []

        def invoke() -> None:
            result = CliRunner().invoke(app, list(args), input=input, env=env)
            stderr = result.stderr
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                assert result.exc_info is not None
                stderr += "Traceback (most recent call last):\n" + "".join(
                    traceback.format_exception(*result.exc_info)
                )
            outcome.append(CliResult(result.exit_code, result.stdout, stderr))

        # Commands call asyncio.run, which refuses to run inside a test's own event loop: give them a
        # thread of their own then.
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            invoke()
        else:
            worker = threading.Thread(target=invoke)
            worker.start()
            worker.join(timeout=60)
        return outcome[0]

    def db(self, work: Callable[[AsyncConnection, KeyRing], Awaitable[T]]) -> T:
        """Run `work` in one transaction on the gateway's database, from the test process."""
        settings = self.settings()

        async def main() -> T:
            engine = make_engine(settings.resolved_database_url(), pool=False)
            try:
                await migrate(engine)
                async with engine.begin() as conn:
                    return await work(conn, KeyRing(settings.master_secret()))
            finally:
                await engine.dispose()

        return asyncio.run(main())

    def new_user(self, balance_usd: str = "10", *, models: list[str] | None = None) -> tuple[str, str, int]:
        """A fresh user with credit and one key: (username, secret key, user id)."""
        username = "u" + uuid.uuid4().hex[:10]

        async def work(conn: AsyncConnection, keyring: KeyRing) -> tuple[str, int]:
            user_id = await repo.create_user(conn, username, email=f"{username}@example.com")
            if usd_to_micros(balance_usd) > 0:
                await repo.add_credit(conn, user_id, usd_to_micros(balance_usd), note="test")
            key = await repo.create_key(conn, keyring, user_id, name="test", models=models)
            return key.secret, user_id

        secret, user_id = self.db(work)
        if self.proc is not None:
            self.wait_key_live(secret)
        return username, secret, user_id

    def wait_config_live(self, timeout: float = 10) -> None:
        """Wait until the running server has loaded the configuration the database holds now (keys,
        budgets, channels, prices: it reloads within a second of a change)."""
        wanted = self.db(lambda conn, _k: repo.config_version(conn))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if httpx.get(self.base_url + "/readyz").json().get("config_version", -1) >= wanted:
                return
            time.sleep(0.05)
        raise AssertionError(f"the server did not load configuration version {wanted} within {timeout} s")

    def wait_key_live(self, secret: str, timeout: float = 5) -> float:
        """Wait until the running server accepts a new key (it reloads within a second)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            resp = httpx.get(self.base_url + "/v1/models", headers={"Authorization": f"Bearer {secret}"})
            if resp.status_code == 200:
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError("the server did not pick up the new key within the timeout")

    def wait_for_usage(self, user_id: int, count: int, timeout: float = 10) -> list[Any]:
        deadline = time.monotonic() + timeout
        rows: list[Any] = []
        while time.monotonic() < deadline:
            rows = list(self.db(lambda c, _k: repo.list_usage(c, user_id=user_id)))
            if len(rows) >= count:
                return rows
            time.sleep(0.1)
        raise AssertionError(f"expected {count} usage rows for user {user_id}, found {len(rows)}")

    def balance(self, user_id: int) -> int:
        return self.db(lambda c, _k: repo.balance(c, user_id))
