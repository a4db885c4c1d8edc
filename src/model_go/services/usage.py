"""Usage and billing reads: a user's rows, pages across users, CSV rows, chart series, the ledger."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.money import micros_to_usd
from model_go.errors import InvalidRequest, NotFound
from model_go.services import users
from model_go.storage import repo, usage_repo
from model_go.storage.tables import USAGE_VIEW_FIELDS
from model_go.storage.usage_repo import UsageFilter

# What a person may see of a usage row (API, CSV, CLI), plus the cost in USD
ROW_FIELDS = USAGE_VIEW_FIELDS
CSV_MAX_ROWS = 200_000


@dataclass(frozen=True)
class UsagePage:
    items: list[dict[str, Any]]
    total: int


@dataclass(frozen=True)
class Billing:
    balance_micros: int
    ledger: Sequence[Row[Any]]
    ledger_total: int


def parse_when(value: str | None, param: str, *, end: bool = False) -> datetime | None:
    """ISO date (a whole UTC day; with `end`, the day is included) or ISO date-time (UTC when no
    offset is given)."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"not an ISO date or date-time, e.g. 2026-05-17: {value!r}", param=param, code="invalid_value"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def usage_filter(
    user_id: int | None,
    *,
    since: str | None = None,
    until: str | None = None,
    model: str | None = None,
    key_id: int | None = None,
) -> UsageFilter:
    return UsageFilter(
        user_id=user_id,
        since=parse_when(since, "since"),
        until=parse_when(until, "until", end=True),
        model=model or None,
        key_id=key_id,
    )


def row_view(row: Any, *, with_user: bool = False) -> dict[str, Any]:
    view = {name: getattr(row, name) for name in ROW_FIELDS}
    view["cost_usd"] = micros_to_usd(row.cost_micros)
    if with_user:
        view["user_id"] = row.user_id
        view["username"] = row.username
    return view


async def page(
    conn: AsyncConnection, flt: UsageFilter, *, page: int, page_size: int, with_user: bool = False
) -> UsagePage:
    """Rows newest first, one page of them."""
    rows, total = await usage_repo.page(conn, flt, page=page, page_size=page_size)
    return UsagePage(items=[row_view(r, with_user=with_user) for r in rows], total=total)


async def user_for_filter(conn: AsyncConnection, user: str) -> int:
    """The id of a user named by username, email or id (for the operators' usage view)."""
    row = await repo.user_by_login(conn, user)
    if row is None and user.isdigit():
        row = await repo.user_by_id(conn, int(user))
    if row is None:
        raise NotFound(f"no such user: {user}", param="user", code="user_not_found")
    return int(row.id)


async def csv_rows(conn: AsyncConnection, flt: UsageFilter) -> list[dict[str, Any]]:
    """Rows oldest first, at most CSV_MAX_ROWS of them."""
    return [row_view(r) for r in await usage_repo.oldest_first(conn, flt, CSV_MAX_ROWS)]


async def daily_summary(conn: AsyncConnection, user_id: int, days: int) -> dict[str, Any]:
    return await usage_repo.daily_summary(conn, user_id, days)


async def billing(conn: AsyncConnection, user_id: int, *, page: int, page_size: int) -> Billing:
    """A user's balance and one page of their ledger, newest first."""
    balance = await repo.balance(conn, user_id)
    entries, total = await repo.ledger_page(conn, user_id, offset=(page - 1) * page_size, limit=page_size)
    return Billing(balance_micros=balance, ledger=entries, ledger_total=total)


async def rows_for_operator(
    conn: AsyncConnection, *, username: str | None, since: str | None
) -> Sequence[Row[Any]]:
    """Usage rows with usernames, oldest first, for the command line."""
    user_id = (await users.find(conn, username=username)).id if username else None
    return await repo.list_usage(conn, user_id=user_id, since=parse_when(since, "since"))
