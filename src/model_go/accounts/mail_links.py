"""Mail with a single-use link is queued without the link's secret: the outbox holds a
placeholder, and the token (kept in the database only as its hash) is issued when the mail is
sent. So a copy of the database or a queue left unsent by a missing SMTP server holds no usable
password-reset or verification link."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.accounts import mailtokens
from model_go.storage.outbox_repo import Claimed

PLACEHOLDER = "MODELGO-LINK-TOKEN"  # URL-safe: the templates' quote() leaves it as it is
PURPOSE_OF_KIND = {"verify_email": "verify", "email_change": "email_change", "password_reset": "reset"}


async def render(conn: AsyncConnection, mail: Claimed) -> str | None:
    """The body to send, with a fresh token in its link; None when there is nothing to send (a
    reset asked for an address without an account, queued only so both cases cost the same)."""
    purpose = PURPOSE_OF_KIND.get(mail.kind)
    if purpose is None:
        return mail.body
    if mail.user_id is None or not mail.to:
        return None
    new_email = mail.to if purpose == "email_change" else None
    token = await mailtokens.issue(conn, mail.user_id, purpose, new_email=new_email)
    return mail.body.replace(PLACEHOLDER, token)
