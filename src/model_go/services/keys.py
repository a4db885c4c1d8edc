"""API keys: create (model list, expiry, no escalation, a cap per user), list, revoke."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.errors import InvalidRequest, NotFound, PermissionDenied
from model_go.security import KeyRing
from model_go.storage import repo

MAX_ACTIVE_KEYS = 100


@dataclass(frozen=True)
class KeyView:
    """A key as its owner sees it: the display prefix, never the secret or its hash."""

    id: int
    name: str
    prefix: str
    models: list[str] | None  # None: every model
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: Row[Any]) -> KeyView:
        return cls(
            id=row.id,
            name=row.name,
            prefix=row.prefix,
            models=orjson.loads(row.models) if row.models else None,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
        )


@dataclass(frozen=True)
class CreatedKey:
    key: KeyView
    secret: str  # shown once, now; only its keyed hash is stored


def _check_no_escalation(
    creator: Row[Any] | None, models: list[str] | None, expires_at: datetime | None
) -> None:
    """A key may create keys, but never one with more rights than itself."""
    if creator is None:
        return
    if creator.models is not None:
        allowed = set(orjson.loads(creator.models))
        if models is None or not set(models) <= allowed:
            raise PermissionDenied(
                "This API key is restricted to some models; it cannot create a key for other models.",
                param="models",
                code="key_rights_exceeded",
            )
    if creator.expires_at is not None and (expires_at is None or expires_at > creator.expires_at):
        raise PermissionDenied(
            "This API key expires; it cannot create a key that lives longer.",
            param="expires_at",
            code="key_rights_exceeded",
        )


def _checked_expiry(expires_at: datetime | None, now: datetime) -> datetime | None:
    if expires_at is None:
        return None
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    if expires_at <= now:
        raise InvalidRequest("expires_at must be in the future.", param="expires_at", code="invalid_value")
    return expires_at


async def create(
    conn: AsyncConnection,
    keyring: KeyRing,
    user_id: int,
    *,
    name: str = "",
    models: Sequence[str] | None = None,
    expires_at: datetime | None = None,
    creator: Row[Any] | None = None,
    now: datetime | None = None,
) -> CreatedKey:
    """Create a key for a user, optionally limited to some models and with an expiry. `creator` is
    the API key making the request, if one does: the new key cannot exceed its rights."""
    expires_at = _checked_expiry(expires_at, now or datetime.now(UTC))
    allowed = None
    if models is not None:
        try:
            allowed = repo.validate_models(models)
        except repo.RepoError as exc:
            raise InvalidRequest(str(exc), param="models", code="invalid_value") from None
    _check_no_escalation(creator, allowed, expires_at)
    if await repo.active_key_count(conn, user_id) >= MAX_ACTIVE_KEYS:
        raise InvalidRequest(
            f"At most {MAX_ACTIVE_KEYS} active keys; revoke one first.", code="too_many_keys"
        )
    new = await repo.create_key(
        conn, keyring, user_id, name=name.strip(), models=allowed, expires_at=expires_at
    )
    row = await repo.key_by_id(conn, new.id)
    assert row is not None
    return CreatedKey(key=KeyView.of(row), secret=new.secret)


async def list_for(conn: AsyncConnection, user_id: int) -> list[KeyView]:
    """Every key of a user, revoked ones included, oldest first."""
    return [KeyView.of(row) for row in await repo.list_keys(conn, user_id)]


def key_not_found(key_id: int) -> NotFound:
    return NotFound(f"no active key with id {key_id}", param="id", code="key_not_found")


async def revoke(conn: AsyncConnection, key_id: int, *, owner_id: int | None = None) -> bool:
    """Revoke a key (the server refuses it within a second). With `owner_id`, another user's key is
    not found. False when the key was already revoked."""
    row = await repo.key_by_id(conn, key_id)
    if row is None or (owner_id is not None and row.user_id != owner_id):
        raise key_not_found(key_id)
    return await repo.revoke_key(conn, key_id, user_id=owner_id)
