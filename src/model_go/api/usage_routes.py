"""/api/usage and /api/billing: the user's own usage rows, CSV, chart series, balance and ledger."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import func, select

from model_go.accounts.export import ledger_view
from model_go.api.deps import CurrentUser, StateDep
from model_go.api.schemas import BillingOut, Page, SummaryOut
from model_go.billing.money import micros_to_usd
from model_go.errors import InvalidRequest
from model_go.storage.tables import ledger, users, utcnow
from model_go.usage import rollups

router = APIRouter(prefix="/api", tags=["usage"])
CSV_MAX_ROWS = 200_000
PageNo = Annotated[int, Query(ge=1, le=1_000_000)]
PageSize = Annotated[int, Query(ge=1, le=500)]


def parse_when(value: str | None, param: str, *, end: bool = False) -> datetime | None:
    """ISO date (a whole UTC day; `until` includes it) or ISO date-time (UTC when no offset)."""
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
            f"'{param}' must be an ISO date or date-time, e.g. 2026-05-17.", param=param, code="invalid_value"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def usage_filter(
    user_id: int | None, since: str | None, until: str | None, model: str | None, key_id: int | None
) -> rollups.UsageFilter:
    return rollups.UsageFilter(
        user_id=user_id,
        since=parse_when(since, "since"),
        until=parse_when(until, "until", end=True),
        model=model or None,
        key_id=key_id,
    )


@router.get("/usage", response_model=Page[dict[str, Any]])
async def list_usage(
    principal: CurrentUser,
    state: StateDep,
    since: str | None = None,
    until: str | None = None,
    model: str | None = None,
    key_id: int | None = None,
    page: PageNo = 1,
    page_size: PageSize = 50,
) -> dict[str, Any]:
    """The user's usage rows, newest first, filtered and paginated."""
    flt = usage_filter(principal.id, since, until, model, key_id)
    async with state.engine.connect() as conn:
        items, total = await rollups.page(conn, flt, page=page, page_size=page_size)
    return {"items": items, "page": page, "page_size": page_size, "total": total}


def _cell(value: Any) -> str:
    text = "" if value is None else value.isoformat() if isinstance(value, datetime) else str(value)
    # a user agent such as "=HYPERLINK(...)" must not become a formula in a spreadsheet
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/usage.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
async def usage_csv(
    principal: CurrentUser,
    state: StateDep,
    since: str | None = None,
    until: str | None = None,
    model: str | None = None,
    key_id: int | None = None,
) -> Response:
    """The same rows as /api/usage (oldest first, unpaginated) as a CSV download."""
    flt = usage_filter(principal.id, since, until, model, key_id)
    async with state.engine.connect() as conn:
        rows = await rollups.all_rows(conn, flt, CSV_MAX_ROWS)
    out = io.StringIO()
    writer = csv.writer(out)
    fields = [*rollups.ROW_FIELDS, "cost_usd"]
    writer.writerow(fields)
    for row in rows:
        writer.writerow([_cell(row[name]) for name in fields])
    filename = f"model-go-usage-{utcnow().date().isoformat()}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/usage/summary", response_model=SummaryOut)
async def usage_summary(
    principal: CurrentUser, state: StateDep, days: Annotated[int, Query(ge=1, le=90)] = 30
) -> dict[str, Any]:
    """Requests and spend per UTC day and model, for the overview charts."""
    async with state.engine.connect() as conn:
        return await rollups.daily_summary(conn, principal.id, days)


@router.get("/billing", response_model=BillingOut)
async def billing(
    principal: CurrentUser, state: StateDep, page: PageNo = 1, page_size: PageSize = 50
) -> dict[str, Any]:
    """Balance and the ledger of top-ups and charges, newest first."""
    async with state.engine.connect() as conn:
        balance = int(
            await conn.scalar(select(users.c.balance_micros).where(users.c.id == principal.id)) or 0
        )
        entries = await conn.execute(
            select(ledger)
            .where(ledger.c.user_id == principal.id)
            .order_by(ledger.c.created_at.desc(), ledger.c.id.desc())
            .offset((page - 1) * page_size)
            .limit(page_size)
        )
        total = await conn.scalar(
            select(func.count()).select_from(ledger).where(ledger.c.user_id == principal.id)
        )
    return {
        "balance_micros": balance,
        "balance_usd": micros_to_usd(balance),
        "ledger": {
            "items": [ledger_view(e) for e in entries],
            "page": page,
            "page_size": page_size,
            "total": int(total or 0),
        },
    }
