"""`model-go serve`: migrate the database, create the demo user on first start, serve the API."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.cli.common import fail, load_settings, out, run_db
from model_go.observability.logs import configure as configure_logging
from model_go.security import KeyRing
from model_go.server import STARTUP_FAILURE
from model_go.server import uvicorn_server as _uvicorn_server
from model_go.services import database
from model_go.settings import Settings

MAX_PORT = 65535
STDOUT, STDERR = 1, 2


WORKERS_HELP = (
    "Worker processes on one port, each a replica on the shared database and Redis; more than 1 "
    "needs MODELGO_REDIS_URL (see the README on replicas)."
)


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (MODELGO_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (MODELGO_PORT).")] = None,
    no_migrate: Annotated[
        bool,
        typer.Option(
            "--no-migrate",
            help="Do not migrate the database; refuse to start unless its schema is current "
            "(run `model-go migrate` once before rolling out replicas). MODELGO_AUTO_MIGRATE=false too.",
        ),
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help=WORKERS_HELP)] = 1,
    # set by `--workers N` on the processes it starts: the listening socket they inherit, and which
    # worker each is (in its log lines)
    worker_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
    worker_index: Annotated[int | None, typer.Option(hidden=True)] = None,
    worker_ready_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Migrate the database and serve the API."""
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if no_migrate:
        overrides["auto_migrate"] = False
    settings = load_settings(**overrides)
    if worker_fd is not None:
        _run_worker(settings, worker_fd, worker_index or 0, worker_ready_fd)
        return
    if workers > 1:
        problem = workers_problem(settings, workers)
        if problem:
            raise fail(problem)
    _prepare(settings)  # once, before any worker
    if workers == 1:
        configure_logging(settings.log_level, settings.log_format)
        out.print(f"model-go listening on http://{settings.host}:{settings.port}", highlight=False)
        _become_server(settings, overrides)
        return
    code = _run_workers(settings, workers)
    if code:
        raise typer.Exit(code)


def _prepare(settings: Settings) -> None:
    """Migrate the database (or check its schema), create the secret and, on first start, the demo."""
    from model_go.bootstrap import ensure_demo

    run_db(_nothing, settings)  # fails with what to do when the schema is not current
    demo_key = run_db(ensure_demo, settings) if settings.demo else None
    if demo_key:
        out.print(
            "[bold]First start:[/bold] created user 'demo' with $5.00 of credit, the built-in "
            "'demo' model and this API key (shown once, store it now):",
            highlight=False,
        )
        out.print(demo_key, highlight=False, soft_wrap=True)


def _run_workers(settings: Settings, workers: int) -> int:
    """Bind the port, start `workers` processes on it, supervise them until SIGTERM; the exit status."""
    configure_logging(settings.log_level, settings.log_format, {"pid": os.getpid()})
    from model_go.cli.workers import Supervisor, listening_socket

    try:
        sock = listening_socket(settings.host, settings.port)
    except OSError as exc:
        raise fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from None
    out.print(
        f"model-go listening on http://{settings.host}:{settings.port} with {workers} workers",
        highlight=False,
    )
    worker_env: dict[int, dict[str, str]] = {}
    if settings.metrics_port is not None:  # one metrics port per worker: MODELGO_METRICS_PORT + i - 1
        worker_env = {
            i: {"MODELGO_METRICS_PORT": str(settings.metrics_port + i - 1)} for i in range(1, workers + 1)
        }
    return Supervisor(workers, sock, settings.shutdown_grace_seconds, worker_env).run()


def workers_problem(settings: Settings, workers: int) -> str | None:
    """Why `--workers N` (N > 1) cannot run with these settings; None when it can."""
    if not settings.redis_url:
        return (
            f"--workers {workers} needs MODELGO_REDIS_URL: each worker is a separate process, and "
            "without a shared Redis they would overspend: each would keep its own balance "
            "reservations, rate limits, sign-in throttling and channel health, so a key could spend "
            f"its balance and pass its limits {workers} times over. Set "
            "MODELGO_REDIS_URL=redis://HOST:6379/0, or run one worker."
        )
    if settings.metrics_port is not None and settings.metrics_port + workers - 1 > MAX_PORT:
        return (
            f"--workers {workers} serves metrics on MODELGO_METRICS_PORT and the {workers - 1} ports "
            f"after it, which pass {MAX_PORT}: choose a lower MODELGO_METRICS_PORT."
        )
    return None


def _run_worker(settings: Settings, fd: int, index: int, ready_fd: int | None) -> None:
    """One worker of `serve --workers N`: serve on the inherited socket until SIGTERM, or until the
    supervisor is gone (its children would otherwise serve on, unsupervised, after a SIGKILL). Once
    the application has started, one byte to `ready_fd` tells the supervisor so (a worker that exits
    before that failed to start; cli/workers.py)."""
    configure_logging(settings.log_level, settings.log_format, {"worker": index, "pid": os.getpid()})
    server = _uvicorn_server(settings)
    sock = socket.socket(fileno=fd)
    supervisor = os.getppid()

    def exit_with_supervisor() -> None:
        while ready_fd is not None and not server.started and not server.should_exit:
            time.sleep(0.05)
        if ready_fd is not None:
            if server.started:
                os.write(ready_fd, b"1")
            os.close(ready_fd)
        while not server.should_exit:
            if os.getppid() != supervisor:
                # its log lines went to the supervisor through a pipe nobody reads now: send them to
                # the standard output it left (Docker's log, say), so no write fails while draining
                os.dup2(STDOUT, STDERR)
                logging.getLogger("model_go.workers").warning("the supervisor is gone; shutting down")
                server.should_exit = True
                return
            time.sleep(1)

    threading.Thread(target=exit_with_supervisor, name="supervisor-watch", daemon=True).start()
    server.run(sockets=[sock])
    if not server.started:
        raise typer.Exit(STARTUP_FAILURE)


# The command-line options `serve` takes, as the environment variables Settings reads them from.
OPTION_VARIABLES = {"host": "MODELGO_HOST", "port": "MODELGO_PORT", "auto_migrate": "MODELGO_AUTO_MIGRATE"}


def _become_server(settings: Settings, overrides: dict[str, Any]) -> None:
    """Replace this process with `python -m model_go.server` (same process id, streams and
    environment, plus the command-line options): the server then holds none of the CLI's modules,
    nor Alembic's after a migration (see server.py). Where exec is not POSIX's (Windows starts a new
    process), serve in this one."""
    if os.name != "posix":
        from model_go.server import serve_forever

        serve_forever(settings)
        return
    env = dict(os.environ)
    env.update({OPTION_VARIABLES[name]: str(value) for name, value in overrides.items()})
    # the interpreter's own options (-X, -W, -O, ...), as multiprocessing passes them to its children
    flags: list[str] = getattr(subprocess, "_args_from_interpreter_flags", list)()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()  # the buffered log handler writes what it holds; exec discards the rest
    # our own interpreter and module, no shell, no input from the request path
    os.execve(sys.executable, [sys.executable, *flags, "-m", "model_go.server"], env)  # noqa: S606


async def _nothing(_conn: AsyncConnection, _keyring: KeyRing) -> None:
    return None


def migrate() -> None:
    """Bring the database schema to this version's (once, before rolling out replicas)."""
    settings = load_settings()

    before, after = asyncio.run(database.migrate(settings))
    if before == after:
        out.print(f"the database schema is current (revision {', '.join(sorted(after))})", highlight=False)
    else:
        was = ", ".join(sorted(before)) or "an empty database"
        out.print(f"migrated the database from {was} to revision {', '.join(sorted(after))}", highlight=False)
