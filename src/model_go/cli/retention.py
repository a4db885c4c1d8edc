"""`model-go retention run`: purge usage rows past the retention limit, physically."""

from __future__ import annotations

import asyncio

import typer

from model_go.cli.common import err, fail, load_settings, out, progress_on_stderr
from model_go.services import database

retention_app = typer.Typer(help="Purge usage logs past the retention limit.", no_args_is_help=True)


@retention_app.command("run")
def retention_run() -> None:
    """Delete usage rows older than MODELGO_USAGE_RETENTION_DAYS (max 90) and purge them physically."""
    from model_go.usage import retention

    settings = load_settings()

    async def main() -> retention.PurgeResult:
        async with database.opened(settings) as engine:
            with progress_on_stderr() as update:
                return await retention.run(engine, settings.usage_retention_days, update)

    try:
        result = asyncio.run(main())
    except ValueError as exc:  # a schema that needs `model-go migrate`
        raise fail(str(exc)) from None
    out.print(
        f"removed {result.usage_rows} usage rows older than {settings.usage_retention_days} days",
        highlight=False,
    )
    if not result.purged_physically:
        err.print("[yellow]note:[/yellow] the WAL checkpoint stayed busy; run it again", highlight=False)
