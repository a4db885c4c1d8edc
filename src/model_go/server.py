"""The serving process: what `model-go serve` (one worker) becomes once its command line is parsed and
the database is ready (`python -m model_go.server`, started by cli/serve.py in the same process
through exec).

Exec rather than a call: the CLI's own modules (typer, rich, every command group) and, after a
migration, Alembic's, stay behind in the image exec replaces, so the server holds only what serving
imports; the process id, its standard streams and its environment carry over. Settings come from the
environment, where cli/serve.py put its command-line options."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from model_go.settings import Settings

if TYPE_CHECKING:
    import uvicorn

STARTUP_FAILURE = 3  # uvicorn's exit status when the server could not start


def uvicorn_server(settings: Settings) -> uvicorn.Server:
    """The API on settings.host:settings.port, as a uvicorn server not yet started."""
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


def serve_forever(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; exit with STARTUP_FAILURE when the server could not start."""
    server = uvicorn_server(settings)
    server.run()
    if not server.started:  # (uvicorn.run's own rule: the port was taken, the lifespan failed)
        sys.exit(STARTUP_FAILURE)


def main() -> None:
    from model_go.observability.logs import configure as configure_logging

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    serve_forever(settings)


if __name__ == "__main__":
    main()
