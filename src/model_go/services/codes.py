"""Redemption codes: create a batch (codes shown once), list and disable batches, redeem a code.

A redemption is one transaction: the conditional UPDATE … SET used = used + 1 WHERE used < uses
(its row count says whether a use was left) and the ledger entry with reference
"<code id>:<user id>" (unique: once per user per code). Either both commit or neither does, so
`uses` is never exceeded, whatever the concurrency, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from model_go.billing import codes, kinds
from model_go.billing.money import micros_to_usd
from model_go.errors import GatewayError, InvalidRequest, NotFound
from model_go.security import KeyRing
from model_go.storage import billing_repo
from model_go.storage.tables import utcnow

MAX_CODES_PER_BATCH = 1000
MAX_USES_PER_CODE = 1_000_000


class CodeRefused(GatewayError):
    """A code that cannot be redeemed (unknown, disabled, expired, used up, already redeemed by you)."""

    status = 400
    type = "invalid_request_error"


# one answer for a code that does not exist and one that was disabled: nobody learns which
UNKNOWN = "This code is not valid."


@dataclass(frozen=True)
class NewBatch:
    batch_id: int
    codes: list[str]


@dataclass(frozen=True)
class Redeemed:
    amount_micros: int
    balance_micros: int


async def create_batch(
    engine: AsyncEngine,
    keyring: KeyRing,
    *,
    amount_micros: int,
    count: int,
    uses: int = 1,
    expires_at: datetime | None = None,
    note: str | None = None,
    admin_id: int | None = None,
) -> NewBatch:
    if not 1 <= count <= MAX_CODES_PER_BATCH:
        raise InvalidRequest(f"count: 1 to {MAX_CODES_PER_BATCH} codes.", param="count", code="invalid_value")
    if not 1 <= uses <= MAX_USES_PER_CODE:
        raise InvalidRequest(f"uses: 1 to {MAX_USES_PER_CODE}.", param="uses", code="invalid_value")
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= utcnow()):
        raise InvalidRequest(
            "expires_at must be a future time with a time zone.", param="expires_at", code="invalid_value"
        )
    plain = [codes.new_code() for _ in range(count)]
    async with engine.begin() as conn:
        batch_id = await billing_repo.create_batch(
            conn,
            amount_micros=amount_micros,
            uses_per_code=uses,
            expires_at=expires_at,
            note=(note or "").strip()[:255] or None,
            created_by=admin_id,
            code_hashes=[codes.code_hash(keyring, c) for c in plain],
        )
    return NewBatch(batch_id=batch_id, codes=plain)


def batch_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "amount_micros": row.amount_micros,
        "amount_usd": micros_to_usd(row.amount_micros),
        "codes": int(row.codes or 0),
        "uses_per_code": row.uses_per_code,
        "used": int(row.used or 0),
        "uses": int(row.uses or 0),
        "expires_at": row.expires_at,
        "disabled": bool(row.disabled),
        "note": row.note,
        "created_at": row.created_at,
    }


async def list_batches(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [batch_view(r) for r in await billing_repo.list_batches(conn)]


async def set_batch_disabled(engine: AsyncEngine, batch_id: int, disabled: bool) -> None:
    async with engine.begin() as conn:
        if not await billing_repo.set_batch_disabled(conn, batch_id, disabled):
            raise NotFound("No such code batch.", param="batch_id", code="batch_not_found")


async def redeem(engine: AsyncEngine, keyring: KeyRing, *, user_id: int, code: str) -> Redeemed:
    """Credit the code's amount to the user, once per user, at most `uses` times in all."""
    if not code or len(code) > codes.MAX_INPUT_LENGTH:
        raise CodeRefused(UNKNOWN, param="code", code="invalid_code")
    code_hash = codes.code_hash(keyring, code)
    try:
        async with engine.begin() as conn:
            row = await billing_repo.code_by_hash(conn, code_hash)
            if row is None or row.disabled:
                raise CodeRefused(UNKNOWN, param="code", code="invalid_code")
            if row.expires_at is not None and row.expires_at <= utcnow():
                raise CodeRefused("This code has expired.", param="code", code="code_expired")
            reference = f"{row.id}:{user_id}"
            if await billing_repo.entry_exists(conn, kinds.REDEMPTION, reference):
                raise CodeRefused(
                    "You have already redeemed this code.", param="code", code="code_already_redeemed"
                )
            if not await billing_repo.take_code_use(conn, row.id):
                raise CodeRefused("This code has been used up.", param="code", code="code_used_up")
            balance = await billing_repo.post_entry(
                conn,
                user_id=user_id,
                kind=kinds.REDEMPTION,
                amount_micros=row.amount_micros,
                reference=reference,
                note="redemption code",
            )
    except IntegrityError:
        # the same user redeeming the same code concurrently: the other attempt committed
        raise CodeRefused(
            "You have already redeemed this code.", param="code", code="code_already_redeemed"
        ) from None
    return Redeemed(amount_micros=int(row.amount_micros), balance_micros=balance)
