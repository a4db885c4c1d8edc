"""`model-go serve`: migrate the database, create the demo user on first start, serve the API."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.cli.common import fail, load_settings, out, run_db
from model_go.observability.logs import configure as configure_logging
from model_go.security import KeyRing
from model_go.services import database
from model_go.settings import Settings

if TYPE_CHECKING:
    import uvicorn

MAX_PORT = 65535
STDOUT, STDERR = 1, 2
STARTUP_FAILURE = 3  # uvicorn's exit status when the server could not start


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
        server = _uvicorn_server(settings)
        server.run()
        if not server.started:  # (uvicorn.run's own rule: the port was taken, the lifespan failed)
            raise typer.Exit(STARTUP_FAILURE)
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


def _uvicorn_server(settings: Settings) -> uvicorn.Server:
    import uvicorn

    from model_go.app import create_server_app
    from model_go.guard_http import ConnectionLimits, guarded_protocol

    config = uvicorn.Config(
        create_server_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=False,  # it would print query strings; the relay logs its own redacted line
        log_config=None,
        loop="uvloop",
        # httptools plus the limits uvicorn lacks (head size, head and body deadlines, a JSON 503 at
        # the connection cap); no websocket routes, so no upgrades either
        http=guarded_protocol(ConnectionLimits.from_settings(settings)),
        ws="none",
        timeout_keep_alive=settings.idle_connection_timeout_seconds,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,  # type: ignore[arg-type]  # a float works
        # uvicorn would otherwise take X-Forwarded-For from local peers, which lets any local client
        # reset per-IP login throttling and forge usage IPs; wire/client_ip.py believes only the
        # proxies in MODELGO_TRUSTED_PROXIES
        proxy_headers=False,
    )
    return uvicorn.Server(config)


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
