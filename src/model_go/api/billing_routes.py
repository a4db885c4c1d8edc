"""/api billing: card top-ups (Stripe Checkout and its webhook), redemption codes, admin adjustments."""

from __future__ import annotations

import logging
from datetime import datetime
from functools import cache
from typing import Any

from fastapi import APIRouter, Request, status
from pydantic import Field

from model_go.api.deps import AdminUser, CurrentUser, PathId, StateDep
from model_go.api.schemas import Strict
from model_go.billing import payments as stripe_api
from model_go.billing.money import micros_to_usd, parse_usd
from model_go.errors import GatewayError, InvalidRequest
from model_go.services import billing, codes, low_balance, payments
from model_go.settings import Settings

log = logging.getLogger("model_go.payments")
router = APIRouter(prefix="/api", tags=["billing"])


class CheckoutIn(Strict):
    amount_usd: str = Field(max_length=32, description='USD as a string, e.g. "20" or "12.50".')


class RedeemIn(Strict):
    code: str = Field(max_length=64)


class AdjustmentIn(Strict):
    action: str = Field(description="credit, debit or refund", max_length=16)
    amount_usd: str = Field(max_length=32)
    note: str = Field(max_length=255, description="The reason, kept on the ledger entry.")


class CodeBatchIn(Strict):
    amount_usd: str = Field(max_length=32)
    count: int = Field(ge=1, le=codes.MAX_CODES_PER_BATCH)
    uses: int = Field(
        default=1, ge=1, le=codes.MAX_USES_PER_CODE, description="Redemptions per code, in all."
    )
    expires_at: datetime | None = None
    note: str | None = Field(default=None, max_length=255)


class LowBalanceIn(Strict):
    low_balance_usd: str | None = Field(
        max_length=32,
        description='Mail me once when my balance falls below this many USD ("5.00"); "0": never;'
        " null: the operator's default.",
    )


class WebhookRefused(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_signature"


class WebhookFailed(GatewayError):
    status = 500
    code = "webhook_failed"


def gateway(settings: Settings) -> stripe_api.StripeGateway | None:
    key = settings.stripe_secret_key.get_secret_value() if settings.stripe_secret_key else ""
    return stripe_api.StripeGateway(key, settings.stripe_api_base) if key else None


def limits(settings: Settings) -> payments.TopupLimits:
    return payments.TopupLimits.from_usd(settings.topup_min_usd, settings.topup_max_usd)


@cache
def _warn_no_webhook_secret() -> None:
    log.warning("a Stripe webhook arrived but MODELGO_STRIPE_WEBHOOK_SECRET is not set: refused")


@router.get("/billing/topups")
async def list_topups(principal: CurrentUser, state: StateDep) -> dict[str, Any]:
    """Your card top-ups (receipts: amount, date, status, Stripe reference) and the top-up limits."""
    settings = state.settings
    bounds = limits(settings)
    return {
        "card_payments": gateway(settings) is not None,
        "min_usd": micros_to_usd(bounds.min_micros),
        "max_usd": micros_to_usd(bounds.max_micros),
        "items": await payments.list_topups(state.engine, principal.id),
    }


@router.get("/billing/low-balance")
async def get_low_balance(principal: CurrentUser, state: StateDep) -> dict[str, Any]:
    """The low-balance threshold in force (the user's, else the operator's) and whether the balance is
    below it (the dashboard's reminder)."""
    async with state.engine.connect() as conn:
        found = await low_balance.view(conn, principal.id, state.settings.low_balance_micros)
    return found.as_dict()


@router.put("/billing/low-balance")
async def set_low_balance(body: LowBalanceIn, principal: CurrentUser, state: StateDep) -> dict[str, Any]:
    """Set the balance below which one reminder mail is sent (again after the balance rises above it)."""
    async with state.engine.begin() as conn:
        found = await low_balance.set_threshold(
            conn, principal.id, body.low_balance_usd, state.settings.low_balance_micros
        )
    return found.as_dict()


@router.post("/billing/checkout", status_code=status.HTTP_201_CREATED)
async def checkout(body: CheckoutIn, principal: CurrentUser, state: StateDep) -> dict[str, Any]:
    """Start a card top-up: answers the Stripe Checkout URL to send the browser to."""
    settings = state.settings
    result = await payments.start_checkout(
        state.engine,
        gateway(settings),
        user_id=principal.id,
        amount_micros=parse_usd(body.amount_usd),
        limits=limits(settings),
        public_url=settings.public_url,
    )
    return {"order_id": result.order_id, "url": result.url}


@router.post("/billing/stripe/webhook")
async def stripe_webhook(request: Request, state: StateDep) -> dict[str, Any]:
    """Stripe's signed events. Verified on the raw body; refused (503) while no secret is configured."""
    secret = state.settings.stripe_webhook_secret
    if secret is None or not secret.get_secret_value():
        _warn_no_webhook_secret()
        raise payments.PaymentsUnavailable(
            "Webhooks are not configured on this server.", code="webhook_not_configured"
        )
    payload = await request.body()
    try:
        event = stripe_api.verify_event(
            payload, request.headers.get("stripe-signature"), secret.get_secret_value()
        )
    except stripe_api.SignatureRefused:
        raise WebhookRefused("The Stripe signature is missing, wrong or too old.") from None
    try:
        outcome = await payments.handle_event(state.engine, event)
    except Exception as exc:
        log.error(
            "stripe event %s could not be applied (%s); Stripe will retry",
            event.get("id"),
            type(exc).__name__,
        )
        raise WebhookFailed("The event could not be applied; please retry.") from None
    return {"received": True, "outcome": outcome}


@router.post("/redeem")
async def redeem(body: RedeemIn, principal: CurrentUser, state: StateDep) -> dict[str, Any]:
    """Redeem a code: its amount is credited to your balance (once per code for each person)."""
    result = await codes.redeem(state.engine, state.keyring, user_id=principal.id, code=body.code)
    return {
        "amount_usd": micros_to_usd(result.amount_micros),
        "balance_micros": result.balance_micros,
        "balance_usd": micros_to_usd(result.balance_micros),
    }


@router.post("/admin/users/{user_id}/adjustments", status_code=status.HTTP_201_CREATED)
async def adjust(user_id: PathId, body: AdjustmentIn, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """Credit, debit or refund a balance by hand, with a reason; one ledger entry carrying your id."""
    entry = await billing.adjust(
        state.engine,
        user_id=user_id,
        action=body.action,
        amount_micros=parse_usd(body.amount_usd),
        note=body.note,
        admin_id=admin.id,
    )
    return {
        "user_id": entry.user_id,
        "kind": entry.kind,
        "amount_usd": micros_to_usd(entry.amount_micros),
        "reference": entry.reference,
        "balance_micros": entry.balance_micros,
        "balance_usd": micros_to_usd(entry.balance_micros),
    }


@router.post("/admin/codes", status_code=status.HTTP_201_CREATED)
async def create_codes(body: CodeBatchIn, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """Create a batch of redemption codes. The codes are in this answer only: they are stored hashed."""
    if body.expires_at is not None and body.expires_at.tzinfo is None:
        raise InvalidRequest(
            "expires_at needs a time zone (e.g. Z).", param="expires_at", code="invalid_value"
        )
    batch = await codes.create_batch(
        state.engine,
        state.keyring,
        amount_micros=parse_usd(body.amount_usd),
        count=body.count,
        uses=body.uses,
        expires_at=body.expires_at,
        note=body.note,
        admin_id=admin.id,
    )
    return {"batch_id": batch.batch_id, "codes": batch.codes}


@router.get("/admin/codes")
async def list_codes(admin: AdminUser, state: StateDep) -> list[dict[str, Any]]:
    """Code batches, newest first, with how many of their uses were redeemed."""
    return await codes.list_batches(state.engine)


@router.post("/admin/codes/{batch_id}/disable")
async def disable_codes(batch_id: PathId, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """Disable every code of a batch: they answer like unknown codes from then on."""
    await codes.set_batch_disabled(state.engine, batch_id, True)
    return {"batch_id": batch_id, "disabled": True}
