"""Rate limits as operators set them: tiers (a user's default limits, by name), a user's tier, and a
user's own limits. A key's own limits are set with the key (services/keys.py). Every change reaches
the running server within a second (the snapshot, relay/snapshot.py); the relay/limits.py docstring
says how they are counted."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.errors import InvalidRequest, NotFound
from model_go.services import users
from model_go.services.changes import UNSET, Change, Unset
from model_go.storage import limits_repo, repo
from model_go.storage.tables import DEFAULT_TIER

MAX_LIMIT = 2**31 - 1  # the columns are 32-bit integers
TIER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
# each limit as callers name it, and its column
COLUMNS = {"rpm": "rpm_limit", "tpm": "tpm_limit", "max_concurrency": "max_concurrency"}


@dataclass(frozen=True)
class LimitChange(Change):
    """Limits to set; UNSET: leave as is, None: remove (the tier's, or no limit, applies)."""

    rpm: int | Unset | None = UNSET
    tpm: int | Unset | None = UNSET
    max_concurrency: int | Unset | None = UNSET

    def columns(self) -> dict[str, int | None]:
        """The columns to write, each a whole number from 1 or None."""
        values: dict[str, int | None] = {}
        for name, column in COLUMNS.items():
            value = getattr(self, name)
            if isinstance(value, Unset):
                continue
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT
            ):
                raise InvalidRequest(
                    f"{name} must be a whole number from 1 to {MAX_LIMIT}, or null to remove it.",
                    param=name,
                    code="invalid_value",
                )
            values[column] = value
        return values

    def required(self) -> dict[str, int | None]:
        if self.empty:
            raise InvalidRequest(
                "Nothing to change: give rpm, tpm or max_concurrency (null removes one).",
                code="invalid_value",
            )
        return self.columns()


NO_CHANGE = LimitChange()


@dataclass(frozen=True)
class LimitsView:
    """Requests a minute, tokens a minute, concurrent requests; None: not set here."""

    rpm: int | None
    tpm: int | None
    max_concurrency: int | None

    @classmethod
    def of(cls, row: Row[Any] | None) -> LimitsView:
        if row is None:
            return cls(None, None, None)
        return cls(rpm=row.rpm_limit, tpm=row.tpm_limit, max_concurrency=row.max_concurrency)


@dataclass(frozen=True)
class TierView:
    name: str
    limits: LimitsView
    users: int  # accounts in the tier


@dataclass(frozen=True)
class UserLimits:
    """A user's tier and limits: their own, and their tier's (theirs win where set)."""

    user_id: int
    username: str
    tier: str
    own: LimitsView
    tier_limits: LimitsView


def _checked_name(name: str, param: str = "name") -> str:
    if not isinstance(name, str) or not TIER_NAME.fullmatch(name):
        raise InvalidRequest(
            "A tier name is 1 to 32 lower-case letters, digits, '-' or '_'.",
            param=param,
            code="invalid_value",
        )
    return name


async def list_tiers(conn: AsyncConnection) -> list[TierView]:
    """Every tier, "default" always among them (with no row, the MODELGO_DEFAULT_* settings)."""
    counts = await limits_repo.tier_user_count(conn)
    rows = {row.name: row for row in await limits_repo.list_tiers(conn)}
    names = sorted({DEFAULT_TIER, *rows})
    return [TierView(n, LimitsView.of(rows.get(n)), counts.get(n, 0)) for n in names]


async def set_tier(conn: AsyncConnection, name: str, change: LimitChange) -> TierView:
    """Create a tier, or change some of its limits."""
    name = _checked_name(name)
    columns = change.columns()
    await limits_repo.set_tier(conn, name, columns)
    await repo.bump_version(conn)
    return next(t for t in await list_tiers(conn) if t.name == name)


async def _view(conn: AsyncConnection, user: Row[Any]) -> UserLimits:
    return UserLimits(
        user_id=user.id,
        username=user.username,
        tier=user.tier,
        own=LimitsView.of(user),
        tier_limits=LimitsView.of(await limits_repo.tier(conn, user.tier)),
    )


async def user_limits(
    conn: AsyncConnection, *, user_id: int | None = None, username: str | None = None
) -> UserLimits:
    return await _view(conn, await users.find(conn, user_id=user_id, username=username))


async def set_user_tier(
    conn: AsyncConnection, tier: str, *, user_id: int | None = None, username: str | None = None
) -> UserLimits:
    """Move a user to a tier ("default", or one an operator created)."""
    user = await users.find(conn, user_id=user_id, username=username)
    if tier != DEFAULT_TIER and await limits_repo.tier(conn, _checked_name(tier, "tier")) is None:
        raise NotFound(f"no such tier: {tier[:32]}", param="tier", code="tier_not_found")
    await limits_repo.set_user_columns(conn, user.id, {"tier": tier})
    await repo.bump_version(conn)
    return await user_limits(conn, user_id=user.id)


async def set_user_limits(
    conn: AsyncConnection,
    change: LimitChange,
    *,
    user_id: int | None = None,
    username: str | None = None,
) -> UserLimits:
    """Set or remove some of a user's own limits (counted across all their keys)."""
    user = await users.find(conn, user_id=user_id, username=username)
    await limits_repo.set_user_columns(conn, user.id, change.required())
    await repo.bump_version(conn)
    return await user_limits(conn, user_id=user.id)


def describe(limits: LimitsView) -> str:
    """ "60 rpm, 100000 tpm, 4 concurrent", or "none"."""
    parts = [
        f"{value} {unit}"
        for value, unit in ((limits.rpm, "rpm"), (limits.tpm, "tpm"), (limits.max_concurrency, "concurrent"))
        if value is not None
    ]
    return ", ".join(parts) or "none"
