"""API keys: create (model list, expiry, budgets, no escalation, a cap per user), list, set budgets,
revoke."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.budgets import PERIODS
from model_go.billing.money import parse_usd
from model_go.errors import InvalidRequest, NotFound, PermissionDenied, RepoError
from model_go.security import KeyRing
from model_go.services.changes import UNSET, Change, Unset
from model_go.services.limits import COLUMNS, NO_CHANGE, LimitChange, LimitsView
from model_go.storage import budgets_repo, keys_repo, repo

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
    budget_micros: int | None  # the spend limit per budget_period; None: no such limit
    budget_period: str | None  # day | week | month (UTC; weeks start on Monday)
    lifetime_budget_micros: int | None
    limits: LimitsView  # the key's own rate limits (its user's apply as well)

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
            budget_micros=row.budget_micros,
            budget_period=row.budget_period if row.budget_micros is not None else None,
            lifetime_budget_micros=row.lifetime_budget_micros,
            limits=LimitsView.of(row),
        )


@dataclass(frozen=True)
class BudgetChange(Change):
    """Budgets as typed by a person (USD strings); UNSET: leave as is, None: remove."""

    budget_usd: str | Unset | None = UNSET
    budget_period: str | Unset | None = UNSET
    lifetime_budget_usd: str | Unset | None = UNSET

    def columns(self, current: Row[Any] | None) -> dict[str, Any]:
        """The api_keys columns to write, checked against the key's current budget (None: a new key)."""
        values: dict[str, Any] = {}
        if not isinstance(self.lifetime_budget_usd, Unset):
            values["lifetime_budget_micros"] = _usd_or_none(self.lifetime_budget_usd, "lifetime_budget_usd")
        budget = (
            _usd_or_none(self.budget_usd, "budget_usd") if not isinstance(self.budget_usd, Unset) else None
        )
        period = self.budget_period if not isinstance(self.budget_period, Unset) else None
        if period is not None and period not in PERIODS:
            raise InvalidRequest(
                f"budget_period must be one of {', '.join(PERIODS)} (got {str(period)[:16]!r}).",
                param="budget_period",
                code="invalid_value",
            )
        if isinstance(self.budget_usd, Unset) and isinstance(self.budget_period, Unset):
            return values
        if isinstance(self.budget_usd, Unset):  # a new period for the budget the key has
            budget = current.budget_micros if current is not None else None
        elif isinstance(self.budget_period, Unset) and budget is not None and current is not None:
            period = current.budget_period  # a new amount for the period the key has
        if budget is not None and period is None:
            raise InvalidRequest(
                "A budget needs a period: day, week or month.",
                param="budget_period",
                code="invalid_value",
            )
        if budget is None and period is not None:
            raise InvalidRequest(
                "A budget period needs an amount in USD too.",
                param="budget_usd",
                code="invalid_value",
            )
        values.update(budget_micros=budget, budget_period=period)
        return values


def _usd_or_none(text: str | None, param: str) -> int | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidRequest(
            f'{param} must be a string such as "5.00" or null.', param=param, code="invalid_value"
        )
    return parse_usd(text.strip(), param=param)


def _check_may_set_budgets(creator: Row[Any] | None) -> None:
    """A key under a budget cannot make or change keys' budgets: it could lift its own limit."""
    if creator is not None and (
        creator.budget_micros is not None or creator.lifetime_budget_micros is not None
    ):
        raise PermissionDenied(
            "This API key has a budget; it cannot create keys or change budgets. Use the dashboard.",
            param="budget_usd",
            code="key_rights_exceeded",
        )


@dataclass(frozen=True)
class CreatedKey:
    key: KeyView
    secret: str  # shown once, now; only its keyed hash is stored


def _check_no_escalation(
    creator: Row[Any] | None,
    models: list[str] | None,
    expires_at: datetime | None,
    limits: dict[str, int | None],
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
    for column, value in limits.items():
        ceiling = getattr(creator, column)
        if ceiling is not None and (value is None or value > ceiling):
            raise PermissionDenied(
                "This API key has rate limits; it cannot create a key with higher ones.",
                param=column,
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
    budgets: BudgetChange = BudgetChange(),
    limits: LimitChange = NO_CHANGE,
) -> CreatedKey:
    """Create a key for a user, optionally limited to some models and with an expiry. `creator` is
    the API key making the request, if one does: the new key cannot exceed its rights."""
    expires_at = _checked_expiry(expires_at, now or datetime.now(UTC))
    allowed = None
    if models is not None:
        try:
            allowed = repo.validate_models(models)
        except RepoError as exc:
            raise InvalidRequest(str(exc), param="models", code="invalid_value") from None
    limit_columns = limits.columns()
    _check_no_escalation(creator, allowed, expires_at, {**dict.fromkeys(COLUMNS.values()), **limit_columns})
    _check_may_set_budgets(creator)
    budget_columns = budgets.columns(None)
    if await repo.active_key_count(conn, user_id) >= MAX_ACTIVE_KEYS:
        raise InvalidRequest(
            f"At most {MAX_ACTIVE_KEYS} active keys; revoke one first.", code="too_many_keys"
        )
    new = await repo.create_key(
        conn, keyring, user_id, name=name.strip(), models=allowed, expires_at=expires_at
    )
    if budget_columns or limit_columns:
        await budgets_repo.set_budget(conn, new.id, {**budget_columns, **limit_columns})
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


async def _active_key(conn: AsyncConnection, key_id: int, owner_id: int | None) -> Row[Any]:
    row = await repo.key_by_id(conn, key_id)
    if row is None or row.revoked_at is not None or (owner_id is not None and row.user_id != owner_id):
        raise key_not_found(key_id)
    return row


async def set_budgets(
    conn: AsyncConnection,
    key_id: int,
    change: BudgetChange,
    *,
    owner_id: int | None = None,
    creator: Row[Any] | None = None,
) -> KeyView:
    """Set, change or remove an active key's budgets; the running server applies them within a second.
    With `owner_id`, another user's key is not found; `creator` is the API key making the request."""
    row = await _active_key(conn, key_id, owner_id)
    _check_may_set_budgets(creator)
    if change.empty:
        raise InvalidRequest(
            "Nothing to change: give a budget (with its period) or a lifetime budget; null removes one.",
            code="invalid_value",
        )
    await budgets_repo.set_budget(conn, key_id, change.columns(row))
    await repo.bump_version(conn)
    updated = await repo.key_by_id(conn, key_id)
    assert updated is not None
    return KeyView.of(updated)


async def of_bearer(
    conn: AsyncConnection, key_id: int, user_id: int
) -> tuple[Row[Any] | None, Row[Any] | None]:
    """The key's row if it is not revoked, and its owner's row: what /api knows of a key's bearer."""
    return await keys_repo.key_and_owner(conn, key_id, user_id)


async def set_limits(
    conn: AsyncConnection, key_id: int, change: LimitChange, *, owner_id: int | None = None
) -> KeyView:
    """Set or remove some of an active key's own rate limits; the running server applies them
    within a second. With `owner_id`, another user's key is not found."""
    await _active_key(conn, key_id, owner_id)
    await budgets_repo.set_budget(conn, key_id, change.required())
    await repo.bump_version(conn)
    updated = await repo.key_by_id(conn, key_id)
    assert updated is not None
    return KeyView.of(updated)
