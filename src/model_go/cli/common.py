"""What every command shares: the consoles, one-line errors, and one transaction on the database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress, TaskID
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.errors import GatewayError, RepoError
from model_go.security import KeyRing
from model_go.services import database
from model_go.settings import Settings

T = TypeVar("T")

out = Console()
err = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print `error: message` on stderr; the caller raises the returned Exit (status 1)."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


def load_settings(**overrides: object) -> Settings:
    """The settings from the environment (and the command's options), or a one-line error per
    invalid setting: never a traceback, and never a value (a secret may be among them)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        for problem in exc.errors(include_input=False, include_url=False):
            name = "MODELGO_" + "_".join(str(part) for part in problem["loc"]).upper()
            message = str(problem["msg"]).removeprefix("Value error, ")
            err.print(
                f"[red]error:[/red] {name}: {message}" if problem["loc"] else f"[red]error:[/red] {message}",
                highlight=False,
            )
        raise typer.Exit(1) from None


def run_db(
    work: Callable[[AsyncConnection, KeyRing], Awaitable[T]],
    settings: Settings | None = None,
    *,
    options: Mapping[str, str] | None = None,
) -> T:
    """Open the database (migrating it if needed), run `work` in one transaction, close.

    A refused operation becomes a one-line error; `options` names the command-line option behind
    a parameter the error points at (e.g. {"base_url": "--base-url"})."""
    settings = settings or load_settings()

    async def main() -> T:
        async with database.opened(settings) as engine, engine.begin() as conn:
            return await work(conn, KeyRing(settings.master_secret()))

    try:
        return asyncio.run(main())
    except GatewayError as exc:
        label = (options or {}).get(exc.param or "")
        raise fail(f"{label}: {exc.message}" if label else exc.message) from None
    except (RepoError, ValueError) as exc:  # SchemaNotCurrent too
        raise fail(str(exc)) from None


def split_models(text: str | None) -> list[str] | None:
    """A comma-separated list of model names; None when the option was not given."""
    if text is None:
        return None
    return [m.strip() for m in text.split(",") if m.strip()]


@contextmanager
def progress_on_stderr(disable: bool = False) -> Iterator[Callable[[str, int, int], None]]:
    """A `(step, done, total)` callback that draws one rich progress bar per step on stderr while
    a long operation runs (gone when it ends; stdout stays clean for the result)."""
    with Progress(console=err, transient=True, disable=disable) as progress:
        tasks: dict[str, TaskID] = {}

        def update(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = progress.add_task(step, total=total)
            progress.update(tasks[step], completed=done, total=total)

        yield update
