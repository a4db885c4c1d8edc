"""`model-go serve`: migrate the database, create the demo user on first start, serve the API."""

from __future__ import annotations

import logging
import sys
import time
from typing import Annotated, Any

import typer

from model_go.cli.common import out, run_db
from model_go.settings import Settings


def _configure_logging(settings: Settings) -> None:
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # documented logging switches: skip the caller, thread and process lookups on every record
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SecondCachingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])


class _SecondCachingFormatter(logging.Formatter):
    """The standard format, with the date and time rendered once a second instead of per record
    (time.strftime was a fifth of an access-log line's cost)."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(record.created))
        return f"{self._text},{int(record.msecs):03d}"


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
    _configure_logging(settings)
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
        # uvicorn would otherwise take X-Forwarded-For from local peers, which lets any local client
        # reset per-IP login throttling and forge usage IPs; wire/client_ip.py believes only the
        # proxies in MODELGO_TRUSTED_PROXIES
        proxy_headers=False,
    )
