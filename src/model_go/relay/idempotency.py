"""`Idempotency-Key` on a billable request: a retry with the same key is never run or billed twice.

model-go keeps no reply (the privacy policy: prompts and responses are never stored), so it cannot
replay one. A request whose key was already used, by this API key, within the window
(`MODELGO_IDEMPOTENCY_HOURS`, 24 h) is answered 409 `idempotency_key_used`, naming the original
request id, whose usage row says what it cost; the same key with a different body is 422
`idempotency_key_reused`; a key whose request is still running is 409 `idempotency_key_in_use`.
An original that failed and was not billed (an upstream error, a 402) frees its key: the retry runs.

What is kept is what the usage row keeps anyway plus two keyed hashes (security.KeyRing.fingerprint):
of the key and of the body. In memory, the keys of requests in flight and of the last minutes (one
dict lookup per request that carries a key, none for the others); beyond that, one indexed query of
the usage rows, only on a miss. Across replicas, two copies of a retry racing on different replicas
are both run until the shared store (Redis) covers in-flight keys too.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from model_go.billing.money import micros_to_usd
from model_go.errors import Conflict, InvalidRequest, Unprocessable
from model_go.storage import usage_repo

RECENT_SECONDS = 600.0  # finished requests stay in memory this long (their rows are flushed by then)
MAX_KEY_LENGTH = 255


@dataclass
class Use:
    """One request made with an Idempotency-Key."""

    request_id: str
    body_hash: str
    status: int | None  # None while it runs
    cost_micros: int = 0
    finished_at: float = 0.0  # monotonic


# (key id, Idempotency-Key hash, since) → the latest use on record
Lookup = Callable[[int, str, datetime], Awaitable[Use | None]]


def checked_key(value: str) -> str:
    """The header's value, if it is one: 1 to 255 printable ASCII characters."""
    if not 0 < len(value) <= MAX_KEY_LENGTH or not value.isascii() or not value.isprintable():
        raise InvalidRequest(
            f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
            param="Idempotency-Key",
            code="invalid_idempotency_key",
        )
    return value


class Idempotency:
    def __init__(self, lookup: Lookup, window_hours: float) -> None:
        self._lookup = lookup
        self._window = timedelta(hours=window_hours)
        self._uses: OrderedDict[tuple[int, str], Use] = OrderedDict()  # in-flight first-come order

    async def claim(self, key_id: int, key_hash: str, body_hash: str, request_id: str) -> None:
        """Let this request run under its Idempotency-Key, or raise why it may not."""
        slot = (key_id, key_hash)
        self._forget_old()
        use = self._uses.get(slot)
        if use is None:
            use = await self._lookup(key_id, key_hash, datetime.now(UTC) - self._window)
            use = self._uses.get(slot) or use  # a retry may have claimed it during the lookup
        if use is not None and not _frees_its_key(use):
            _refuse(use, body_hash)
        self._uses[slot] = Use(request_id=request_id, body_hash=body_hash, status=None)
        self._uses.move_to_end(slot)

    def finish(self, key_id: int, key_hash: str, status: int, cost_micros: int) -> None:
        use = self._uses.get((key_id, key_hash))
        if use is not None and use.status is None:
            use.status, use.cost_micros, use.finished_at = status, cost_micros, time.monotonic()

    def _forget_old(self) -> None:
        """Drop finished uses older than RECENT_SECONDS from the front (oldest claims first); a
        request still running at the front holds the rest until it ends. Amortised O(1)."""
        horizon = time.monotonic() - RECENT_SECONDS
        while self._uses:
            use = next(iter(self._uses.values()))
            if use.status is None or use.finished_at >= horizon:
                return
            self._uses.popitem(last=False)


def _frees_its_key(use: Use) -> bool:
    return use.status is not None and use.status != 200 and use.cost_micros == 0


def _refuse(use: Use, body_hash: str) -> None:
    if use.body_hash != body_hash:
        raise Unprocessable(
            f"This Idempotency-Key was already used with a different request body (request"
            f" {use.request_id}). Use a new key for a new request.",
            param="Idempotency-Key",
            code="idempotency_key_reused",
        )
    if use.status is None:
        raise Conflict(
            f"A request with this Idempotency-Key is still running (request {use.request_id}).",
            param="Idempotency-Key",
            code="idempotency_key_in_use",
        )
    raise Conflict(
        f"This request was already made with this Idempotency-Key: request {use.request_id}"
        f" (HTTP {use.status}, cost ${micros_to_usd(use.cost_micros)}) was not run or billed again."
        " model-go keeps no replies, so it cannot send that one again; its usage row has the details.",
        param="Idempotency-Key",
        code="idempotency_key_used",
        headers={"x-modelgo-original-request-id": use.request_id},
    )


def usage_lookup(engine: AsyncEngine) -> Lookup:
    """The lookup of earlier uses in the usage rows (one indexed query, on an in-memory miss)."""

    async def lookup(key_id: int, key_hash: str, since: datetime) -> Use | None:
        async with engine.connect() as conn:
            row = await usage_repo.idempotent_request(conn, key_id, key_hash, since)
        if row is None:
            return None
        return Use(row.request_id, row.body_hash or "", row.status_code, row.cost_micros)

    return lookup
