"""The supervised task that drains the outbox: send, mark, retry with backoff. Never logs mail text."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from model_go.mail.smtp import SmtpMailer
from model_go.storage import outbox_repo as outbox
from model_go.storage.db import report_failure

log = logging.getLogger("model_go.mail")


Render = Callable[[AsyncConnection, outbox.Claimed], Awaitable[str | None]]


class OutboxSender:
    def __init__(
        self, engine: AsyncEngine, mailer: SmtpMailer, unsent_ttl: timedelta = timedelta(hours=24)
    ) -> None:
        self.engine = engine
        self.mailer = mailer
        self.unsent_ttl = unsent_ttl
        self.wakeup = asyncio.Event()
        # work to run before each pass (the policy mailing resumes here); set by the owner
        self.before_pass: Callable[[], Awaitable[None]] | None = None
        # the body as sent (links get their token here, accounts/mail_links.py); None: nothing to send
        self.render: Render | None = None

    def wake(self) -> None:
        self.wakeup.set()

    async def run(self, interval: float) -> None:
        if not self.mailer.configured:
            log.warning("MODELGO_SMTP_HOST is not set: mail stays queued in the outbox until it is")
        while True:
            try:
                if self.before_pass is not None:
                    await self.before_pass()
                async with self.engine.begin() as conn:
                    await outbox.expire_unsent(conn, self.unsent_ttl)
                if self.mailer.configured:
                    await self.send_due()
            except Exception as exc:
                report_failure(log, "mail pass failed; retrying on the next pass", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=interval)
            self.wakeup.clear()

    async def send_due(self) -> int:
        sent = 0
        for _ in range(100):  # bounded: a pass never spins forever on rows another replica holds
            async with self.engine.begin() as conn:
                ids = await outbox.due(conn)
            if not ids:
                break
            for mail_id in ids:
                sent += await self._send_one(mail_id)
        return sent

    async def _send_one(self, mail_id: int) -> int:
        async with self.engine.begin() as conn:
            claimed = await outbox.claim(conn, mail_id)
            if claimed is None:
                return 0
            body = claimed.body if self.render is None else await self.render(conn, claimed)
        if body is None:
            async with self.engine.begin() as conn:
                await outbox.mark_sent(conn, mail_id)  # nothing to send: forgotten like a sent mail
            return 0
        to, subject = claimed.to, claimed.subject
        try:
            await self.mailer.send(to, subject, body)
        except Exception as exc:
            async with self.engine.begin() as conn:
                gave_up = await outbox.mark_failed_attempt(
                    conn, mail_id, await outbox.attempts_of(conn, mail_id)
                )
            # the exception class only: SMTP replies can echo addresses
            log.warning(
                "mail %d not sent (%s)%s", mail_id, type(exc).__name__, "; giving up" if gave_up else ""
            )
            return 0
        async with self.engine.begin() as conn:
            await outbox.mark_sent(conn, mail_id)
        return 1
