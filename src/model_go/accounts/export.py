"""Everything we hold about a user, machine-readable (JSON). No secrets, no hashes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.accounts import policy
from model_go.accounts import users as user_store
from model_go.billing.money import micros_to_usd
from model_go.storage import accounts_repo, billing_repo, repo
from model_go.storage.tables import USAGE_VIEW_FIELDS, utcnow

USAGE_EXPORT_FIELDS = USAGE_VIEW_FIELDS


def key_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "models": orjson.loads(row.models) if row.models else None,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
        "budget_micros": row.budget_micros,
        "budget_period": row.budget_period,
        "lifetime_budget_micros": row.lifetime_budget_micros,
    }


def ledger_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "amount_micros": row.amount_micros,
        "amount_usd": micros_to_usd(row.amount_micros),
        "note": row.note,
        "request_id": row.request_id,
        "reference": row.reference,
        "created_at": row.created_at,
    }


def order_view(row: Any) -> dict[str, Any]:
    """A card top-up as its owner sees it: the receipt (only Stripe ids and amounts exist)."""
    return {
        "id": row.id,
        "amount_micros": row.amount_micros,
        "amount_usd": micros_to_usd(row.amount_micros),
        "currency": row.currency,
        "status": row.status,
        "refunded_usd": micros_to_usd(row.refunded_micros),
        "stripe_reference": row.payment_intent_id or row.stripe_session_id,
        "created_at": row.created_at,
        "paid_at": row.paid_at,
    }


async def _tickets(conn: AsyncConnection, user_id: int) -> list[dict[str, Any]]:
    out = []
    for t in await accounts_repo.tickets_of(conn, user_id):
        messages = await accounts_repo.ticket_messages_of(conn, t.id)
        out.append(
            {
                "id": t.id,
                "subject": t.subject,
                "status": t.status,
                "created_at": t.created_at,
                "messages": [
                    {"from_staff": m.from_staff, "body": m.body, "created_at": m.created_at} for m in messages
                ],
            }
        )
    return out


async def build(conn: AsyncConnection, user_id: int, retention_days: int) -> dict[str, Any]:
    row = await repo.user_by_id(conn, user_id)
    assert row is not None
    profile = user_store.view(row, await policy.current_version(conn))
    profile.update(
        age_confirmed_at=row.age_confirmed_at,
        policy_accepted_at=row.policy_accepted_at,
        marketing_updated_at=row.marketing_updated_at,
        email_verified_at=row.email_verified_at,
        low_balance_micros=row.low_balance_micros,  # None: the operator's default applies
        low_balance_mailed_at=row.low_balance_mailed_at,
    )
    consents = [
        {"kind": c.kind, "granted": c.granted, "policy_version": c.policy_version, "at": c.created_at}
        for c in await accounts_repo.consents_of(conn, user_id)
    ]
    since: datetime = utcnow() - timedelta(days=retention_days)
    usage = [
        {name: getattr(u, name) for name in USAGE_EXPORT_FIELDS}
        for u in await accounts_repo.usage_of(conn, user_id, since)
    ]
    keys = await repo.list_keys(conn, user_id)
    entries = await accounts_repo.ledger_of(conn, user_id)
    return {
        "exported_at": utcnow(),
        "format": "model-go-export/1",
        "profile": profile,
        "consents": consents,
        "api_keys": [key_view(k) for k in keys],
        "usage": usage,
        "usage_retention_days": retention_days,
        "ledger": [ledger_view(e) for e in entries],
        "topups": [order_view(o) for o in await billing_repo.list_orders(conn, user_id, limit=None)],
        "tickets": await _tickets(conn, user_id),
    }
