"""`model-go serve`: migrate the database, create the demo user on first start, serve the API."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.cli.common import fail, out, run_db
from model_go.observability.logs import configure as configure_logging
from model_go.security import KeyRing
from model_go.services import database
from model_go.settings import Settings


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
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes. Only 1: see the README on replicas.")
    ] = 1,
) -> None:
    """Migrate the database and serve the API."""
    if workers > 1:
        # balances, reservations, rate limits, budgets and channel health live in each process's
        # memory: two workers on one database would each let a balance be spent in full
        raise fail(
            "--workers must be 1: balances, rate limits and channel health are kept in this "
            "process's memory, so two workers on one database would overspend. Run one process "
            "per machine (it uses every core it needs for I/O)."
        )
    import uvicorn

    from model_go.app import create_server_app
    from model_go.bootstrap import ensure_demo
    from model_go.guard_http import ConnectionLimits, guarded_protocol

    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if no_migrate:
        overrides["auto_migrate"] = False
    settings = Settings(**overrides)
    if not settings.auto_migrate:
        run_db(_nothing, settings)  # fails with what to do when the schema is not current
    configure_logging(settings.log_level, settings.log_format)
    demo_key = run_db(ensure_demo, settings) if settings.demo else None
    if demo_key:
        out.print(
            "[bold]First start:[/bold] created user 'demo' with $5.00 of credit, the built-in "
            "'demo' model and this API key (shown once, store it now):",
            highlight=False,
        )
        out.print(demo_key, highlight=False, soft_wrap=True)
    out.print(f"model-go listening on http://{settings.host}:{settings.port}", highlight=False)
    uvicorn.run(
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


async def _nothing(_conn: AsyncConnection, _keyring: KeyRing) -> None:
    return None


def migrate() -> None:
    """Bring the database schema to this version's (once, before rolling out replicas)."""
    settings = Settings()

    before, after = asyncio.run(database.migrate(settings))
    if before == after:
        out.print(f"the database schema is current (revision {', '.join(sorted(after))})", highlight=False)
    else:
        was = ", ".join(sorted(before)) or "an empty database"
        out.print(f"migrated the database from {was} to revision {', '.join(sorted(after))}", highlight=False)
