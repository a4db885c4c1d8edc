"""A signed-in user's own profile, as /api/me changes it: the view, a new username, a new email
address (confirmed by mail), a new password (every session ends), the marketing-mail choice.

The mails each change sends are queued in the same transaction as the change (the outbox), so a
change is never made without its notice, nor announced without being made.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.accounts import policy, sessions
from model_go.accounts import users as user_store
from model_go.accounts.mail_links import PLACEHOLDER
from model_go.errors import InvalidRequest, NotFound
from model_go.mail import templates
from model_go.storage import accounts_repo, repo
from model_go.storage import outbox_repo as outbox
from model_go.storage.metadata import utcnow


async def view(conn: AsyncConnection, user_id: int) -> dict[str, Any]:
    """The user as /api/me shows them, with whether the current policy still needs accepting."""
    row = await repo.user_by_id(conn, user_id)
    if row is None:
        raise NotFound("no such user", code="user_not_found")
    return user_store.view(row, await policy.current_version(conn))


async def rename(conn: AsyncConnection, user: Row[Any], wanted: str) -> None:
    """A new username, at once (the relay's snapshot reloads)."""
    username = user_store.check_username(wanted.strip())
    if username == user.username:
        return
    if await repo.username_taken(conn, username, except_id=user.id):
        raise InvalidRequest("That username is taken.", param="username", code="username_taken")
    await accounts_repo.update_user(conn, user.id, username=username)
    await repo.bump_version(conn)


async def change_email(conn: AsyncConnection, public_url: str, user: Row[Any], wanted: str) -> None:
    """A new address stays pending until its link is followed; the old address hears of it. An
    address another account holds gets the same answer (no enumeration), and its owner a mail."""
    email = user_store.normalize_email(wanted)
    if email == user.email:
        await accounts_repo.update_user(conn, user.id, pending_email=None)
        return
    owner = await repo.user_by_email(conn, email)
    if owner is not None:
        mail = templates.address_in_use(public_url)
        await outbox.enqueue(
            conn, to=email, subject=mail.subject, body=mail.body, kind=mail.kind, user_id=owner.id
        )
        return
    await accounts_repo.update_user(conn, user.id, pending_email=email)
    mail = templates.confirm_new_email(public_url, user.username, PLACEHOLDER)  # token at send time
    await outbox.enqueue(
        conn, to=email, subject=mail.subject, body=mail.body, kind=mail.kind, user_id=user.id
    )
    if user.email:
        notice = templates.email_change_notice(user.username)
        await outbox.enqueue(
            conn, to=user.email, subject=notice.subject, body=notice.body, kind=notice.kind, user_id=user.id
        )


async def set_password(conn: AsyncConnection, user: Row[Any], new_hash: str) -> None:
    """Store the new password's hash, end every session, and tell the user by mail."""
    await accounts_repo.update_user(conn, user.id, password_hash=new_hash)
    await sessions.end_all(conn, user.id)
    if user.email:
        mail = templates.password_changed(user.username)
        await outbox.enqueue(
            conn, to=user.email, subject=mail.subject, body=mail.body, kind=mail.kind, user_id=user.id
        )


async def set_marketing(conn: AsyncConnection, user_id: int, wanted: bool) -> None:
    """Give or withdraw consent to marketing mail; the consent log records it."""
    await accounts_repo.update_user(conn, user_id, marketing_emails=wanted, marketing_updated_at=utcnow())
    await policy.record_consent(conn, user_id, "marketing_emails", wanted)
