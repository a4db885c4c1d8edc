"""Core tables: state, users, API keys, channels, prices, ledger, usage logs (schema changes: migrations/)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

# utcnow is re-exported: the usage writer and the relay import it from here
from model_go.storage.metadata import UTCDateTime, metadata
from model_go.storage.metadata import utcnow as utcnow

# One row per named counter; `config_version` is bumped by every change a running server must see.
state = Table(
    "state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("email", String(254), nullable=True, unique=True),
    Column("password_hash", String(255), nullable=True),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("balance_micros", BigInteger, nullable=False, default=0),
    # bumped with every change of balance_micros: which of two readings is newer (billing/redis_ledger.py)
    Column("balance_version", BigInteger, nullable=False, default=0, server_default="0"),
    # rate limits of the user's own (NULL: their tier's); relay/limits.py
    Column("rpm_limit", Integer, nullable=True),
    Column("tpm_limit", Integer, nullable=True),
    Column("max_concurrency", Integer, nullable=True),
    Column("tier", String(32), nullable=False, default="default", server_default="default"),  # tiers.name
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    # account fields. Operator-created users (CLI) count as verified; sign-up sets NULL explicitly.
    Column("email_verified_at", UTCDateTime, nullable=True, default=utcnow),
    Column("pending_email", String(254), nullable=True),
    Column("age_confirmed_at", UTCDateTime, nullable=True),  # the 18+ attestation; no birth date is kept
    Column("policy_version", String(32), nullable=True),
    Column("policy_accepted_at", UTCDateTime, nullable=True),
    Column("marketing_emails", Boolean, nullable=False, default=False),
    Column("marketing_updated_at", UTCDateTime, nullable=True),
    Column("deleted_at", UTCDateTime, nullable=True),  # the row is then a de-identified tombstone
    # low-balance mail (services/low_balance.py): the user's threshold (NULL: the operator default),
    # armed once the balance is at or above it, disarmed by the one mail sent when it falls below
    Column("low_balance_micros", BigInteger, nullable=True),
    Column("low_balance_armed", Boolean, nullable=False, default=False, server_default="0"),
    Column("low_balance_mailed_at", UTCDateTime, nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(128), nullable=False, default=""),
    Column("prefix", String(32), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    # JSON list of allowed public model names; NULL means every model
    Column("models", Text, nullable=True),
    # rate limits of the key's own, under its user's (NULL: only the user's apply)
    Column("rpm_limit", Integer, nullable=True),
    Column("tpm_limit", Integer, nullable=True),
    Column("max_concurrency", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    # spend limits (billing/budgets.py): per day, ISO week or calendar month (UTC), and for the key's life
    Column("budget_micros", BigInteger, nullable=True),
    Column("budget_period", String(8), nullable=True),  # day | week | month; set with budget_micros
    Column("lifetime_budget_micros", BigInteger, nullable=True),
    # the cost of this key's usage rows the retention purge removed, so the lifetime spend survives it
    Column("purged_spend_micros", BigInteger, nullable=False, default=0, server_default="0"),
)

# Rate-limit tiers: a user's limits unless they have their own; "default" needs no row (then the
# MODELGO_DEFAULT_* settings apply). NULL: no such limit in the tier.
DEFAULT_TIER = "default"
tiers = Table(
    "tiers",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("rpm_limit", Integer, nullable=True),
    Column("tpm_limit", Integer, nullable=True),
    Column("max_concurrency", Integer, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
)

channels = Table(
    "channels",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("provider", String(32), nullable=False),
    Column("base_url", String(2048), nullable=False, default=""),
    Column("api_key_enc", Text, nullable=True),
    Column("models", Text, nullable=False),  # JSON list of public model names
    Column("model_map", Text, nullable=False, default="{}"),  # JSON {public: upstream}
    Column("priority", Integer, nullable=False, default=0),
    Column("weight", Integer, nullable=False, default=1),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("disabled_reason", String(255), nullable=True),
    Column("config", Text, nullable=False, default="{}"),  # JSON: provider-specific options
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    # health as last reported by a server (relay/health_store.py): our own codes, never upstream text
    Column("last_error_at", UTCDateTime, nullable=True),
    Column("last_error", String(255), nullable=True),
    Column("cooldown_until", UTCDateTime, nullable=True),
)

prices = Table(
    "prices",
    metadata,
    Column("model", String(128), primary_key=True),
    Column("input_per_1m", BigInteger, nullable=False),
    Column("output_per_1m", BigInteger, nullable=False),
    Column("cached_input_per_1m", BigInteger, nullable=False),
    Column("cache_write_per_1m", BigInteger, nullable=True),  # NULL: the input price
    Column("request_micros", BigInteger, nullable=False, default=0, server_default="0"),
    Column("image_micros", BigInteger, nullable=False, default=0, server_default="0"),
    Column("free", Boolean, nullable=False, default=False, server_default=false()),
    Column("max_output_tokens", Integer, nullable=True),  # NULL: the catalogue's
    Column("context_length", Integer, nullable=True),  # NULL: the catalogue's
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
)

# Every balance change: credits (positive) and request debits (negative, one per request id).
ledger = Table(
    "ledger",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("request_id", String(40), nullable=True, unique=True),
    Column("kind", String(16), nullable=False),  # billing/kinds.py
    Column("amount_micros", BigInteger, nullable=False),
    Column("note", String(255), nullable=True),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    # what this entry applies (billing/kinds.py); unique per kind, so nothing is applied twice
    Column("reference", String(128), nullable=True),
    # the administrator who made an adjustment or refund by hand
    Column("admin_id", Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Index("ix_ledger_user_created", "user_id", "created_at"),
    UniqueConstraint("kind", "reference"),
)

# Metadata about requests only: never prompt or response text.
usage_logs = Table(
    "usage_logs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("request_id", String(40), nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("key_id", Integer, nullable=True),
    Column("endpoint", String(32), nullable=False),
    Column("model", String(128), nullable=False),
    Column("channel_id", Integer, nullable=True),
    Column("stream", Boolean, nullable=False, default=False),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("cache_write_tokens", Integer, nullable=False, default=0, server_default="0"),
    Column("usage_estimated", Boolean, nullable=False, default=False),
    Column("cost_micros", BigInteger, nullable=False, default=0),
    # the part of cost_micros beyond what was reserved: an upstream that ignored the output cap
    Column("overrun_micros", BigInteger, nullable=False, default=0, server_default="0"),
    Column("status_code", Integer, nullable=False),
    Column("error_code", String(64), nullable=True),
    Column("attempts", Integer, nullable=False, default=1),
    Column("latency_ms", Integer, nullable=False, default=0),
    Column("ttft_ms", Integer, nullable=True),
    Column("client_ip", String(64), nullable=True),
    Column("user_agent", String(512), nullable=True),
    # keyed hashes (never the text) of the request's Idempotency-Key and body (relay/idempotency.py)
    Column("idempotency_hash", String(64), nullable=True),
    Column("body_hash", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Index("ix_usage_logs_user_created", "user_id", "created_at"),
    Index("ix_usage_logs_created", "created_at"),
    Index("ix_usage_logs_idempotency", "key_id", "idempotency_hash"),
    Index("ix_usage_logs_key_created", "key_id", "created_at"),  # a key's spend, for its budgets
)
# What a person may see of a usage row (API, CSV, export, CLI): every column but the owner link.
# str(): column names are a str subclass, which orjson refuses as a dict key.
USAGE_VIEW_FIELDS: tuple[str, ...] = tuple(
    str(c.name) for c in usage_logs.columns if c.name not in ("user_id", "idempotency_hash", "body_hash")
)
