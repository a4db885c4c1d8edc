"""Sign-up, email verification (also of a changed address) and password reset."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.accounts import mailtokens, policy, sessions
from model_go.accounts.mail_links import PLACEHOLDER
from model_go.accounts.runtime import AccountsRuntime
from model_go.errors import InvalidRequest
from model_go.mail import templates
from model_go.passwords import check_policy, hash_password
from model_go.storage import accounts_repo, repo
from model_go.storage import outbox_repo as outbox
from model_go.storage.metadata import utcnow


def password_or_400(password: str, param: str = "password") -> None:
    try:
        check_policy(password)
    except ValueError as exc:
        raise InvalidRequest(
            f"The {param.replace('_', ' ')} is too short or too long: {exc}.",
            param=param,
            code="invalid_password",
        ) from None


async def hash_in_thread(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


async def register(
    conn: AsyncConnection, rt: AccountsRuntime, *, email: str, username: str, password_hash: str, version: str
) -> int | None:
    """Create an unverified customer with their consents, and queue the verification mail. For an
    address that has an account already, mail its owner instead and create nothing (None): the
    caller answers the same either way, so sign-up does not tell who has an account."""
    if version != await policy.current_version(conn):
        raise InvalidRequest(
            "Please accept the current privacy policy version (see GET /api/policy).",
            param="accept_policy_version",
            code="policy_version_mismatch",
        )
    if await repo.username_taken(conn, username):
        raise InvalidRequest("That username is taken.", param="username", code="username_taken")
    owner = await repo.user_by_email(conn, email)
    if owner is not None:
        mail = templates.signup_with_your_address(rt.public_url)
        await outbox.enqueue(
            conn, to=email, subject=mail.subject, body=mail.body, kind=mail.kind, user_id=owner.id
        )
        return None
    now = utcnow()
    user_id = await accounts_repo.insert_user(
        conn,
        username=username,
        email=email,
        password_hash=password_hash,
        is_admin=False,
        disabled=False,
        balance_micros=0,
        created_at=now,
        email_verified_at=None,
        age_confirmed_at=now,
        policy_version=version,
        policy_accepted_at=now,
        marketing_emails=False,
    )
    await policy.record_consent(conn, user_id, "age_18_plus", True)
    await policy.record_consent(conn, user_id, "privacy_policy", True, version=version)
    await repo.bump_version(conn)  # the relay's snapshot learns about the new user
    mail = templates.verify_email(rt.public_url, username, PLACEHOLDER)  # the token: at send time
    await outbox.enqueue(
        conn, to=email, subject=mail.subject, body=mail.body, kind=mail.kind, user_id=user_id
    )
    return user_id


async def verify(conn: AsyncConnection, token: str) -> str:
    """Redeem a verification link: confirms the sign-up address, or switches to a pending new one."""
    redeemed = await mailtokens.redeem(conn, token, ("verify", "email_change"))
    invalid = InvalidRequest(
        "This link is invalid, used or expired. Request a new one.", param="token", code="invalid_token"
    )
    if redeemed is None:
        raise invalid
    row = await repo.user_by_id(conn, redeemed.user_id)
    if row is None or row.deleted_at is not None:
        raise invalid
    now = utcnow()
    if redeemed.purpose == "verify":
        await accounts_repo.update_user(conn, row.id, email_verified_at=now)
        return str(row.email)
    new_email = redeemed.new_email
    if new_email is None or row.pending_email != new_email:
        raise invalid  # a later change request replaced this one
    if await repo.email_taken(conn, new_email, except_id=row.id):
        raise InvalidRequest(
            "Another account uses this email address now.", param="token", code="email_taken"
        )
    await accounts_repo.update_user(conn, row.id, email=new_email, pending_email=None, email_verified_at=now)
    return new_email


async def request_reset(conn: AsyncConnection, rt: AccountsRuntime, email: str) -> None:
    """Queue a reset mail when the address belongs to a live account; say nothing either way.

    Both cases do the same work (one lookup, one outbox row), so the answer takes as long: for an
    address without an account the row names nobody (no user, no address) and the sender drops it.
    The link's token is issued when the mail is sent (accounts/mail_links.py)."""
    row = await repo.user_by_email(conn, email)
    live = row is not None and row.deleted_at is None and not row.disabled
    mail = templates.password_reset(rt.public_url, row.username if live and row else "", PLACEHOLDER)
    await outbox.enqueue(
        conn,
        to=row.email if live and row else "",
        subject=mail.subject,
        body=mail.body,
        kind=mail.kind,
        user_id=row.id if live and row else None,
    )


async def confirm_reset(conn: AsyncConnection, rt: AccountsRuntime, token: str, password_hash: str) -> None:
    redeemed = await mailtokens.redeem(conn, token, ("reset",))
    if redeemed is None:
        raise InvalidRequest(
            "This link is invalid, used or expired. Request a new one.", param="token", code="invalid_token"
        )
    row = await repo.user_by_id(conn, redeemed.user_id)
    if row is None or row.deleted_at is not None:
        raise InvalidRequest("This link is invalid, used or expired.", param="token", code="invalid_token")
    # the link arrived by mail, so it also proves the address
    values: dict[str, object] = {"password_hash": password_hash}
    if row.email_verified_at is None:
        values["email_verified_at"] = utcnow()
    await accounts_repo.update_user(conn, row.id, **values)
    await sessions.end_all(conn, row.id)
    mail = templates.password_changed(row.username)
    await outbox.enqueue(
        conn, to=row.email, subject=mail.subject, body=mail.body, kind=mail.kind, user_id=row.id
    )
