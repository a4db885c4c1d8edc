"""The low-balance mail: one mail when a user's balance falls below their threshold (their own, else
the operator's MODELGO_LOW_BALANCE_USD; 0 turns it off), re-armed once the balance is at or above it
again (a top-up).

Checked by a supervised background task every few seconds, never on the request path: one pass is
one short transaction (re-arm, find who is due, disarm each and queue its mail in the outbox), so a
mail is queued exactly once per crossing, even with several replicas.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from model_go.billing.money import micros_to_usd, parse_usd
from model_go.errors import NotFound
from model_go.mail import templates
from model_go.storage import low_balance_repo, repo
from model_go.storage import outbox_repo as outbox
from model_go.storage.db import report_failure
from model_go.storage.metadata import utcnow

log = logging.getLogger("model_go.low_balance")
_ZERO = re.compile(r"0+(?:\.0+)?")


@dataclass(frozen=True)
class LowBalanceView:
    """What the billing page shows: the threshold in force and whether the balance is below it."""

    low_balance_micros: int  # 0: no mail
    source: str  # "user" (set by the user) or "default" (the operator's)
    balance_micros: int
    below: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "low_balance_micros": self.low_balance_micros,
            "low_balance_usd": micros_to_usd(self.low_balance_micros),
            "source": self.source,
            "balance_micros": self.balance_micros,
            "below": self.below,
        }


def parse_threshold(text: str | None) -> int | None:
    """A threshold typed by a person: USD ("5.00"), "0" for no mail, None for the operator default."""
    if text is None:
        return None
    text = text.strip()
    return 0 if _ZERO.fullmatch(text) else parse_usd(text, param="low_balance_usd")


async def view(conn: AsyncConnection, user_id: int, default_micros: int) -> LowBalanceView:
    user = await repo.user_by_id(conn, user_id)
    if user is None:
        raise NotFound(f"no such user: {user_id}", code="user_not_found")
    own = user.low_balance_micros
    threshold = default_micros if own is None else int(own)
    return LowBalanceView(
        low_balance_micros=threshold,
        source="default" if own is None else "user",
        balance_micros=int(user.balance_micros),
        below=threshold > 0 and user.balance_micros < threshold,
    )


async def set_threshold(
    conn: AsyncConnection, user_id: int, text: str | None, default_micros: int
) -> LowBalanceView:
    await low_balance_repo.set_threshold(conn, user_id, parse_threshold(text))
    return await view(conn, user_id, default_micros)


async def check(engine: AsyncEngine, default_micros: int, public_url: str) -> int:
    """One pass: re-arm, then queue one mail per user who crossed below. How many were queued."""
    queued = 0
    async with engine.begin() as conn:
        await low_balance_repo.rearm(conn, default_micros)
        now = utcnow()
        for user in await low_balance_repo.due(conn, default_micros):
            if not await low_balance_repo.disarm(conn, user.id, now):
                continue
            mail = templates.low_balance(
                public_url, user.username, micros_to_usd(user.balance_micros), micros_to_usd(user.threshold)
            )
            await outbox.enqueue(
                conn, to=user.email, subject=mail.subject, body=mail.body, kind=mail.kind, user_id=user.id
            )
            queued += 1
    return queued


async def run(engine: AsyncEngine, default_micros: int, public_url: str, interval: float) -> None:
    """The supervised loop."""
    while True:
        try:
            queued = await check(engine, default_micros, public_url)
            if queued:
                log.info("queued %d low-balance mails", queued)
        except Exception as exc:
            report_failure(log, "low-balance check failed; retrying at the next interval", exc)
        await asyncio.sleep(interval)
