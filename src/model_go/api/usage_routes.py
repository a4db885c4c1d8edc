"""/api/usage and /api/billing: the user's own usage rows, CSV, chart series, balance and ledger."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from model_go.accounts.export import ledger_view
from model_go.api.deps import CurrentUser, QueryId, StateDep
from model_go.api.schemas import BillingOut, Page, SummaryOut
from model_go.billing.money import micros_to_usd
from model_go.services import usage

router = APIRouter(prefix="/api", tags=["usage"])
PageNo = Annotated[int, Query(ge=1, le=1_000_000)]
PageSize = Annotated[int, Query(ge=1, le=500)]


@router.get("/usage", response_model=Page[dict[str, Any]])
async def list_usage(
    principal: CurrentUser,
    state: StateDep,
    since: str | None = None,
    until: str | None = None,
    model: str | None = None,
    key_id: QueryId = None,
    page: PageNo = 1,
    page_size: PageSize = 50,
) -> dict[str, Any]:
    """The user's usage rows, newest first, filtered and paginated."""
    flt = usage.usage_filter(principal.id, since=since, until=until, model=model, key_id=key_id)
    async with state.engine.connect() as conn:
        found = await usage.page(conn, flt, page=page, page_size=page_size)
    return {"items": found.items, "page": page, "page_size": page_size, "total": found.total}


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
    key_id: QueryId = None,
) -> Response:
    """The same rows as /api/usage (oldest first, unpaginated) as a CSV download."""
    flt = usage.usage_filter(principal.id, since=since, until=until, model=model, key_id=key_id)
    async with state.engine.connect() as conn:
        rows = await usage.csv_rows(conn, flt)
    out = io.StringIO()
    writer = csv.writer(out)
    fields = [*usage.ROW_FIELDS, "cost_usd"]
    writer.writerow(fields)
    for row in rows:
        writer.writerow([_cell(row[name]) for name in fields])
    filename = f"model-go-usage-{datetime.now(UTC).date().isoformat()}.csv"
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
        return await usage.daily_summary(conn, principal.id, days)


@router.get("/billing", response_model=BillingOut)
async def billing(
    principal: CurrentUser, state: StateDep, page: PageNo = 1, page_size: PageSize = 50
) -> dict[str, Any]:
    """Balance and the ledger of top-ups and charges, newest first."""
    async with state.engine.connect() as conn:
        found = await usage.billing(conn, principal.id, page=page, page_size=page_size)
    return {
        "balance_micros": found.balance_micros,
        "balance_usd": micros_to_usd(found.balance_micros),
        "ledger": {
            "items": [ledger_view(e) for e in found.ledger],
            "page": page,
            "page_size": page_size,
            "total": found.ledger_total,
        },
    }
