"""Stripe, the only payment provider: create Checkout Sessions, verify webhook events.

Only Stripe ids and amounts pass through here; card data never reaches model-go. The secret key
and the webhook secret are never logged. Stripe amounts are integer cents of the currency.

The SDK is imported on first use: it is 10 MiB of every server's memory otherwise, and most requests
never pay.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from model_go.billing.money import MICROS_PER_USD

CURRENCY = "usd"
MICROS_PER_CENT = MICROS_PER_USD // 100
WEBHOOK_TOLERANCE_SECONDS = 300


class SignatureRefused(Exception):
    """A webhook body that is not signed by Stripe with our secret (or is stale, or not JSON)."""


class CheckoutFailed(Exception):
    """Stripe did not create a Checkout Session (its text is not shown to anyone)."""


def cents_to_micros(cents: int) -> int:
    return cents * MICROS_PER_CENT


def micros_to_cents(micros: int) -> int:
    if micros % MICROS_PER_CENT:
        raise ValueError("a card payment is a whole number of cents")
    return micros // MICROS_PER_CENT


@dataclass(frozen=True)
class CheckoutRequest:
    order_id: int
    user_id: int
    amount_micros: int
    success_url: str
    cancel_url: str


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


class StripeGateway:
    """Talks to Stripe's API (or the loopback fake in tests, through `api_base`)."""

    def __init__(self, secret_key: str, api_base: str) -> None:
        import stripe

        self._client = stripe.StripeClient(
            secret_key, base_addresses={"api": api_base}, max_network_retries=2
        )

    async def create_checkout(self, req: CheckoutRequest) -> CheckoutSession:
        params: dict[str, Any] = {
            "mode": "payment",
            "client_reference_id": str(req.order_id),
            "metadata": {"order_id": str(req.order_id), "user_id": str(req.user_id)},
            "payment_intent_data": {"metadata": {"order_id": str(req.order_id), "user_id": str(req.user_id)}},
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": CURRENCY,
                        "unit_amount": micros_to_cents(req.amount_micros),
                        "product_data": {"name": "model-go credit"},
                    },
                }
            ],
            "success_url": req.success_url,
            "cancel_url": req.cancel_url,
        }
        import stripe

        try:
            # the SDK's blocking client, off the event loop; its async client needs httpx
            session = await asyncio.to_thread(self._client.v1.checkout.sessions.create, params)  # type: ignore[arg-type]
        except stripe.StripeError as exc:
            raise CheckoutFailed(type(exc).__name__) from None
        if not session.id or not session.url:
            raise CheckoutFailed("session without id or url")
        return CheckoutSession(id=session.id, url=session.url)


def verify_event(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event, if `payload` (the raw body) carries a valid, fresh Stripe signature with `secret`."""
    if not secret:
        raise SignatureRefused("no webhook secret")
    import stripe

    try:
        event = stripe.Webhook.construct_event(
            payload, signature, secret, tolerance=WEBHOOK_TOLERANCE_SECONDS
        )
    except (stripe.SignatureVerificationError, ValueError) as exc:
        raise SignatureRefused(type(exc).__name__) from None
    data: dict[str, Any] = event.to_dict()
    return data
