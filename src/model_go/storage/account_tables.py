"""Tables of the accounts feature: sessions, mail tokens, the mail outbox, policies, consents, tickets."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Table, Text

from model_go.storage.metadata import UTCDateTime, metadata, utcnow

# Server-side sessions. Only a SHA-256 of the session id is stored; the id itself lives in the cookie.
sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("last_seen_at", UTCDateTime, nullable=False, default=utcnow),
    Column("expires_at", UTCDateTime, nullable=False),
)

# Single-use tokens sent by mail (verify, email change, password reset); stored hashed.
email_tokens = Table(
    "email_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("purpose", String(16), nullable=False),  # verify | email_change | reset
    Column("new_email", String(254), nullable=True),  # only for email_change
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
)

# Outgoing mail. Requests enqueue; a background task sends with retries. After the last attempt the
# body (which may hold a link with a token) and the address are cleared.
mail_outbox = Table(
    "mail_outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True),
    Column("kind", String(32), nullable=False),
    Column("to_addr", String(254), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("body", Text, nullable=True),
    Column("status", String(16), nullable=False, default="pending"),  # pending | sent | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False, default=utcnow),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("sent_at", UTCDateTime, nullable=True),
    Index("ix_mail_outbox_status_next", "status", "next_attempt_at"),
)

policy_versions = Table(
    "policy_versions",
    metadata,
    Column("version", String(32), primary_key=True),
    Column("effective_date", String(10), nullable=False),  # YYYY-MM-DD
    Column("text", Text, nullable=False),
    Column("published_at", UTCDateTime, nullable=False, default=utcnow),
    # set once every active user has a delivery row; NULL means the mailing must be resumed
    Column("mailing_completed_at", UTCDateTime, nullable=True),
)

# One row per (policy version, user) mailed about it: the primary key makes "exactly once" hold even
# when a publication is interrupted, resumed, or run by two replicas at once.
policy_deliveries = Table(
    "policy_deliveries",
    metadata,
    Column(
        "version", String(32), ForeignKey("policy_versions.version", ondelete="CASCADE"), primary_key=True
    ),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("outbox_id", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
)

# History of consents given and withdrawn (policy, marketing, age attestation), for export.
consent_events = Table(
    "consent_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(32), nullable=False),  # age_18_plus | privacy_policy | marketing_emails
    Column("granted", Boolean, nullable=False),
    Column("policy_version", String(32), nullable=True),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
)

tickets = Table(
    "tickets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("subject", String(200), nullable=False),
    Column("status", String(16), nullable=False, default="open"),  # open | answered | closed
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
)

ticket_messages = Table(
    "ticket_messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("ticket_id", Integer, ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("author_id", Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("from_staff", Boolean, nullable=False, default=False),
    Column("body", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
)
