"""Users as the accounts feature sees them: the public view of a user, and input normalisation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from model_go.billing.money import micros_to_usd
from model_go.errors import InvalidRequest
from model_go.storage import repo

TOMBSTONE_PREFIX = "deleted-"


def normalize_email(email: str) -> str:
    value = email.strip().lower()
    if len(value) > 254 or not repo.EMAIL_RE.match(value):
        raise InvalidRequest("That is not a valid email address.", param="email", code="invalid_email")
    return value


def check_username(username: str) -> str:
    if not repo.USERNAME_RE.match(username):
        raise InvalidRequest(
            "Usernames are 2-64 characters: letters, digits, '_', '.', '-', starting with a letter or digit.",
            param="username",
            code="invalid_username",
        )
    if username.lower().startswith(TOMBSTONE_PREFIX):
        raise InvalidRequest("That username is reserved.", param="username", code="invalid_username")
    return username


def view(row: Row[Any], current_policy: str) -> dict[str, Any]:
    """The user as the API shows it to themselves (and to admins). No hash, no secret."""
    return {
        "id": row.id,
        "username": row.username,
        "email": row.email,
        "pending_email": row.pending_email,
        "is_admin": bool(row.is_admin),
        "balance_micros": int(row.balance_micros),
        "balance_usd": micros_to_usd(int(row.balance_micros)),
        "created_at": row.created_at,
        "email_verified": row.email_verified_at is not None,
        "marketing_emails": bool(row.marketing_emails),
        "policy_version_accepted": row.policy_version,
        "policy_update_required": row.policy_version != current_policy,
    }
