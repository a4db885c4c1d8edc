"""Stripe top-ups: start a Checkout, and apply the signed webhook events to the ledger exactly once.

Exactly once, per event and per payment: each event is applied in ONE transaction that inserts its
dedupe row (stripe_events) and its ledger entry (unique reference: the payment intent, the charge
with its cumulative refund, the dispute), updates the order and the balance, and bumps the config
version. A concurrent or repeated delivery hits a unique constraint and rolls back whole; the
second try then sees the committed row and answers "duplicate". A failure raises, so the webhook
answers 5xx and Stripe redelivers.

Refunds are cumulative (`amount_refunded`); only the part not yet debited is debited. A refund
that arrives before its payment completed is recorded, and debited in the transaction that
credits the payment, so the net is right whatever the order. A payment that does not match its
order (amount, currency, user, session) credits nothing and is marked for the operator.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from model_go.accounts.export import order_view
from model_go.billing import kinds
from model_go.billing.money import MICROS_PER_USD, micros_to_usd
from model_go.billing.payments import (
    CURRENCY,
    CheckoutFailed,
    CheckoutRequest,
    StripeGateway,
    cents_to_micros,
)
from model_go.errors import GatewayError, InvalidRequest
from model_go.storage import billing_repo

log = logging.getLogger("model_go.payments")


class PaymentsUnavailable(GatewayError):
    status = 503
    type = "api_error"
    code = "payments_not_configured"


class PaymentProviderError(GatewayError):
    status = 502
    type = "api_error"
    code = "payment_provider_error"


@dataclass(frozen=True)
class TopupLimits:
    min_micros: int
    max_micros: int

    @classmethod
    def from_usd(cls, min_usd: int, max_usd: int) -> TopupLimits:
        return cls(min_usd * MICROS_PER_USD, max_usd * MICROS_PER_USD)


@dataclass(frozen=True)
class Checkout:
    order_id: int
    url: str


def _plain(micros: int) -> str:
    """12.500000 -> 12.5, 5.000000 -> 5."""
    return micros_to_usd(micros).rstrip("0").rstrip(".")


def check_amount(amount_micros: int, limits: TopupLimits) -> None:
    if amount_micros % (MICROS_PER_USD // 100):
        raise InvalidRequest("Card top-ups are in whole cents.", param="amount_usd", code="invalid_amount")
    if not limits.min_micros <= amount_micros <= limits.max_micros:
        raise InvalidRequest(
            f"A top-up is between {_plain(limits.min_micros)} and {_plain(limits.max_micros)} USD.",
            param="amount_usd",
            code="amount_out_of_range",
        )


async def start_checkout(
    engine: AsyncEngine,
    gateway: StripeGateway | None,
    *,
    user_id: int,
    amount_micros: int,
    limits: TopupLimits,
    public_url: str,
) -> Checkout:
    """Record a pending order, then ask Stripe for a Checkout Session for it."""
    if gateway is None:
        raise PaymentsUnavailable("Card payments are not available on this server.")
    check_amount(amount_micros, limits)
    async with engine.begin() as conn:
        order_id = await billing_repo.create_order(conn, user_id, amount_micros, CURRENCY)
    base = public_url.rstrip("/")
    request = CheckoutRequest(
        order_id=order_id,
        user_id=user_id,
        amount_micros=amount_micros,
        success_url=f"{base}/account/billing?topup=success&order={order_id}",
        cancel_url=f"{base}/account/billing?topup=cancelled&order={order_id}",
    )
    try:
        session = await gateway.create_checkout(request)
    except CheckoutFailed as exc:
        log.warning("stripe checkout failed for order %d: %s", order_id, exc)
        async with engine.begin() as conn:
            await billing_repo.set_order_status(conn, order_id, "failed", "checkout_failed")
        raise PaymentProviderError("The payment provider is not answering; try again later.") from None
    async with engine.begin() as conn:
        await billing_repo.set_order_session(conn, order_id, session.id)
    return Checkout(order_id=order_id, url=session.url)


# webhook events ---------------------------------------------------------------------------------


def _id(value: Any) -> str | None:
    """A Stripe reference, given as an id or as an expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _session_problem(order: Row[Any] | None, session: dict[str, Any]) -> str | None:
    """Why a paid Checkout Session must not credit its order, or None when it matches."""
    metadata = session.get("metadata") or {}
    if order is None:
        return "unknown_order"
    if _int(metadata.get("user_id")) != order.user_id:
        return "user_mismatch"
    if session.get("currency") != order.currency:
        return "currency_mismatch"
    amount = _int(session.get("amount_total"))
    if amount is None or cents_to_micros(amount) != order.amount_micros:
        return "amount_mismatch"
    if order.stripe_session_id is not None and session.get("id") != order.stripe_session_id:
        return "session_mismatch"
    if _id(session.get("payment_intent")) is None:
        return "no_payment_intent"
    return None


async def _debit_refund(conn: AsyncConnection, order: Row[Any], charge_id: str, refunded: int) -> str:
    """Debit the part of a cumulative refund not debited yet."""
    delta = refunded - int(order.refunded_micros)
    if delta <= 0:
        return "duplicate"
    await billing_repo.post_entry(
        conn,
        user_id=order.user_id,
        kind=kinds.REFUND,
        amount_micros=-delta,
        reference=f"{charge_id}:{refunded}",
        note=f"card payment refunded (order {order.id})",
    )
    await billing_repo.add_order_refunded(conn, order.id, delta)
    return "refund_debited"


async def _session_paid(conn: AsyncConnection, session: dict[str, Any]) -> str:
    if session.get("payment_status") != "paid":
        return "not_paid"  # an async method: checkout.session.async_payment_succeeded follows
    order_id = _int(session.get("client_reference_id")) or _int(
        (session.get("metadata") or {}).get("order_id")
    )
    order = await billing_repo.order_by_id(conn, order_id) if order_id else None
    problem = _session_problem(order, session)
    if problem is not None:
        log.warning("stripe payment not credited: %s (order %s)", problem, order_id)
        if order is not None and order.status != "paid":
            await billing_repo.set_order_status(conn, order.id, "mismatch", problem)
        return "mismatch"
    assert order is not None
    payment = _id(session.get("payment_intent"))
    assert payment is not None
    if order.status == "paid" or await billing_repo.entry_exists(conn, kinds.TOPUP, payment):
        return "duplicate"
    await billing_repo.post_entry(
        conn,
        user_id=order.user_id,
        kind=kinds.TOPUP,
        amount_micros=order.amount_micros,
        reference=payment,
        note=f"card top-up (order {order.id})",
    )
    await billing_repo.mark_order_paid(conn, order.id, payment)
    early = await billing_repo.refunded_for(conn, payment)
    if early is not None:
        await _debit_refund(conn, order, early.charge_id, int(early.amount_refunded_micros))
    return "credited"


async def _charge_refunded(conn: AsyncConnection, charge: dict[str, Any]) -> str:
    payment, charge_id, cents = (
        _id(charge.get("payment_intent")),
        _id(charge.get("id")),
        _int(charge.get("amount_refunded")),
    )
    if payment is None or charge_id is None or cents is None or charge.get("currency") != CURRENCY:
        log.warning("stripe refund event without a usable payment, charge or amount; ignored")
        return "ignored"
    refunded = cents_to_micros(cents)
    await billing_repo.save_refunded(conn, payment, charge_id, refunded)
    order = await billing_repo.order_by_payment(conn, payment)
    if order is None or order.status != "paid":
        return "refund_recorded"  # debited when the payment completes, if it ever does
    return await _debit_refund(conn, order, charge_id, refunded)


async def _dispute_created(conn: AsyncConnection, dispute: dict[str, Any]) -> str:
    payment, dispute_id, cents = (
        _id(dispute.get("payment_intent")),
        _id(dispute.get("id")),
        _int(dispute.get("amount")),
    )
    order = await billing_repo.order_by_payment(conn, payment) if payment else None
    if order is None or dispute_id is None or cents is None or order.status != "paid":
        log.warning("stripe dispute for a payment we did not credit; nothing debited")
        return "ignored"
    if await billing_repo.entry_exists(conn, kinds.DISPUTE, dispute_id):
        return "duplicate"
    await billing_repo.post_entry(
        conn,
        user_id=order.user_id,
        kind=kinds.DISPUTE,
        amount_micros=-cents_to_micros(cents),
        reference=dispute_id,
        note=f"card payment disputed (order {order.id})",
    )
    return "dispute_debited"


Handler = Callable[[AsyncConnection, dict[str, Any]], Awaitable[str]]
HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": _session_paid,
    "checkout.session.async_payment_succeeded": _session_paid,
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute_created,
}


async def _apply(conn: AsyncConnection, event_id: str, event_type: str, obj: dict[str, Any]) -> str:
    if await billing_repo.event_seen(conn, event_id):
        return "duplicate"
    await billing_repo.record_event(conn, event_id, event_type)
    return await HANDLERS[event_type](conn, obj)


async def handle_event(engine: AsyncEngine, event: dict[str, Any]) -> str:
    """Apply one verified event; returns what happened. Raises when it could not be applied."""
    event_id, event_type = _id(event.get("id")), event.get("type")
    obj = (event.get("data") or {}).get("object")
    if event_id is None or event_type not in HANDLERS or not isinstance(obj, dict):
        return "ignored"
    assert isinstance(event_type, str)
    try:
        async with engine.begin() as conn:
            return await _apply(conn, event_id, event_type, obj)
    except IntegrityError:
        # a concurrent delivery committed first; this try sees its rows and answers duplicate
        async with engine.begin() as conn:
            return await _apply(conn, event_id, event_type, obj)


async def list_topups(engine: AsyncEngine, user_id: int) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await billing_repo.list_orders(conn, user_id)
    return [order_view(r) for r in rows]
