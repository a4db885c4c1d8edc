"""`model-go tier ...`, `model-go user tier|limits`: rate-limit tiers and a user's limits. The
options every limit command shares (--rpm, --tpm, --max-concurrency; 0 removes) live here too."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.cli.common import out, run_db
from model_go.security import KeyRing
from model_go.services import limits
from model_go.services.changes import UNSET, Unset

tier_app = typer.Typer(help="Manage rate-limit tiers (a user's default limits).", no_args_is_help=True)

LIMIT_OPTIONS = {"rpm": "--rpm", "tpm": "--tpm", "max_concurrency": "--max-concurrency"}
Rpm = Annotated[int | None, typer.Option("--rpm", min=0, help="Requests per minute (0 removes the limit).")]
Tpm = Annotated[int | None, typer.Option("--tpm", min=0, help="Tokens per minute (0 removes the limit).")]
MaxConcurrency = Annotated[
    int | None,
    typer.Option("--max-concurrency", min=0, help="Requests at a time (0 removes the limit)."),
]


def limit_change(rpm: int | None, tpm: int | None, max_concurrency: int | None) -> limits.LimitChange:
    """The options as a change: not given leaves a limit as it is, 0 removes it."""

    def value(given: int | None) -> int | Unset | None:
        if given is None:
            return UNSET
        return given or None

    return limits.LimitChange(rpm=value(rpm), tpm=value(tpm), max_concurrency=value(max_concurrency))


@tier_app.command("set")
def tier_set(name: str, rpm: Rpm = None, tpm: Tpm = None, max_concurrency: MaxConcurrency = None) -> None:
    """Create a tier or change its limits; the running server applies them within a second."""
    change = limit_change(rpm, tpm, max_concurrency)

    async def work(conn: AsyncConnection, _k: KeyRing) -> limits.TierView:
        return await limits.set_tier(conn, name, change)

    tier = run_db(work, options={**LIMIT_OPTIONS, "name": "NAME"})
    out.print(f"tier {tier.name}: {limits.describe(tier.limits)}", highlight=False)


@tier_app.command("list")
def tier_list() -> None:
    """List tiers with their limits and how many users each has."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> list[limits.TierView]:
        return await limits.list_tiers(conn)

    table = Table("tier", "rpm", "tpm", "max concurrency", "users")
    for tier in run_db(work):
        shown = [str(v) if v is not None else "-" for v in (tier.limits.rpm, tier.limits.tpm)]
        concurrency = tier.limits.max_concurrency
        table.add_row(tier.name, *shown, str(concurrency) if concurrency else "-", str(tier.users))
    out.print(table)


def print_user_limits(found: limits.UserLimits) -> None:
    out.print(
        f"user {found.username}: tier {found.tier} ({limits.describe(found.tier_limits)}); "
        f"own limits: {limits.describe(found.own)}",
        highlight=False,
    )


def user_tier(username: str, tier: str) -> None:
    """Put a user in a tier ("default", or one made with `model-go tier set`)."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> limits.UserLimits:
        return await limits.set_user_tier(conn, tier, username=username)

    print_user_limits(run_db(work, options={"tier": "TIER"}))


def user_limits(
    username: str, rpm: Rpm = None, tpm: Tpm = None, max_concurrency: MaxConcurrency = None
) -> None:
    """Show a user's limits, or set their own (over their tier's; counted across all their keys)."""
    change = limit_change(rpm, tpm, max_concurrency)

    async def work(conn: AsyncConnection, _k: KeyRing) -> limits.UserLimits:
        if change.empty:
            return await limits.user_limits(conn, username=username)
        return await limits.set_user_limits(conn, change, username=username)

    print_user_limits(run_db(work, options=LIMIT_OPTIONS))
