"""`model-go serve`: migrate the database, create the demo user on first start, serve the API."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from model_go.cli.common import out, run_db
from model_go.settings import Settings
from model_go.telemetry.logs import configure as configure_logging


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (MODELGO_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (MODELGO_PORT).")] = None,
) -> None:
    """Migrate the database and serve the API."""
    import uvicorn

    from model_go.app import create_server_app
    from model_go.bootstrap import ensure_demo
    from model_go.guard_http import ConnectionLimits, guarded_protocol

    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = Settings(**overrides)
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
        timeout_graceful_shutdown=30,
        # the client address is the socket peer: uvicorn would otherwise take X-Forwarded-For from
        # local peers, which lets any local client reset per-IP login throttling and forge usage IPs
        proxy_headers=False,
    )
