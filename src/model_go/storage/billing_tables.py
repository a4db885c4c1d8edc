"""Tables of payments and redemption codes: Stripe orders and events, code batches and codes."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, ForeignKey, Integer, String, Table

from model_go.storage.metadata import UTCDateTime, metadata, utcnow

# One row per Checkout Session we create. Only Stripe ids and amounts: no card data ever.
payment_orders = Table(
    "payment_orders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("amount_micros", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    # pending | paid | mismatch (the payment did not match this order: nothing credited) | failed
    Column("status", String(16), nullable=False),
    Column("stripe_session_id", String(255), nullable=True, unique=True),
    Column("payment_intent_id", String(255), nullable=True, unique=True),
    Column("refunded_micros", BigInteger, nullable=False, default=0),  # refunds debited so far
    Column("problem", String(64), nullable=True),  # our own code for the operator, no personal data
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("paid_at", UTCDateTime, nullable=True),
)

# Every Stripe event we acted on, inserted in the same transaction as its effect: a replay is a no-op.
stripe_events = Table(
    "stripe_events",
    metadata,
    Column("event_id", String(255), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
)

# Refunds Stripe reported for a payment (cumulative), also those that arrive before its completion.
stripe_refunds = Table(
    "stripe_refunds",
    metadata,
    Column("payment_intent_id", String(255), primary_key=True),
    Column("charge_id", String(255), nullable=False),
    Column("amount_refunded_micros", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
)

code_batches = Table(
    "code_batches",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("amount_micros", BigInteger, nullable=False),
    Column("uses_per_code", Integer, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("note", String(255), nullable=True),
    Column("created_by", Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
)

# A code is stored only as its keyed hash (HMAC-SHA256 with the server secret), like API keys.
redemption_codes = Table(
    "redemption_codes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "batch_id", Integer, ForeignKey("code_batches.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("uses", Integer, nullable=False),
    Column("used", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
)
