"""The mail outbox on a real SQLite database: retries with backoff, bodies cleared after sending."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from model_go.mail.sender import OutboxSender
from model_go.settings import Settings
from model_go.storage import outbox_repo as outbox
from model_go.storage.account_tables import mail_outbox
from model_go.storage.db import make_engine, migrate
from model_go.storage.tables import utcnow


class FlakyMailer:
    """Fails the first `failures` sends, then accepts; records what it sent."""

    configured = True

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[tuple[str, str, str]] = []

    async def send(self, to: str, subject: str, body: str) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError("smtp down")
        self.sent.append((to, subject, body))


async def _row(engine: Any, mail_id: int) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(mail_outbox).where(mail_outbox.c.id == mail_id))).one()


async def _make_due(engine: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(mail_outbox).values(next_attempt_at=utcnow()))


async def test_retry_then_send_and_forget_the_body(tmp_path: Path) -> None:
    engine = make_engine(Settings(data_dir=tmp_path).resolved_database_url())
    await migrate(engine)
    async with engine.begin() as conn:
        mail_id = await outbox.enqueue(
            conn, to="x@example.com", subject="s", body="link?token=abc", kind="verify_email", user_id=None
        )
    mailer = FlakyMailer(failures=1)
    sender = OutboxSender(engine, mailer)  # type: ignore[arg-type]
    assert await sender.send_due() == 0
    row = await _row(engine, mail_id)
    assert (row.status, row.attempts, row.body) == ("pending", 1, "link?token=abc")
    assert row.next_attempt_at > utcnow()  # backoff: not due again at once
    assert await sender.send_due() == 0 and mailer.sent == []
    await _make_due(engine)
    assert await sender.send_due() == 1
    assert mailer.sent == [("x@example.com", "s", "link?token=abc")]
    row = await _row(engine, mail_id)
    assert (row.status, row.body, row.to_addr) == ("sent", None, "")
    assert await sender.send_due() == 0  # never sent twice
    await engine.dispose()


async def test_gives_up_after_max_attempts_and_clears_the_body(tmp_path: Path) -> None:
    engine = make_engine(Settings(data_dir=tmp_path).resolved_database_url())
    await migrate(engine)
    async with engine.begin() as conn:
        mail_id = await outbox.enqueue(
            conn, to="y@example.com", subject="s", body="secret link", kind="password_reset", user_id=None
        )
    sender = OutboxSender(engine, FlakyMailer(failures=100))  # type: ignore[arg-type]
    for _ in range(outbox.MAX_ATTEMPTS):
        await _make_due(engine)
        await sender.send_due()
    row = await _row(engine, mail_id)
    assert (row.status, row.attempts, row.body, row.to_addr) == ("failed", outbox.MAX_ATTEMPTS, None, "")
    await engine.dispose()
