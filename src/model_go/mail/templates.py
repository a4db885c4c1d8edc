"""The text of every mail model-go sends. Plain text; links point at the dashboard (MODELGO_PUBLIC_URL)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class Mail:
    kind: str
    subject: str
    body: str


def _link(public_url: str, path: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{path}?token={quote(token)}"


SIGNATURE = "\n-- \nmodel-go\n"


def verify_email(public_url: str, username: str, token: str) -> Mail:
    body = (
        f"Hello {username},\n\n"
        "Please confirm your email address to finish creating your model-go account:\n\n"
        f"{_link(public_url, '/verify', token)}\n\n"
        "The link works once and expires in 24 hours. If you did not sign up, ignore this mail:\n"
        "the account stays inactive and no further mail is sent.\n" + SIGNATURE
    )
    return Mail("verify_email", "Confirm your email address", body)


def signup_with_your_address(public_url: str) -> Mail:
    body = (
        "Hello,\n\n"
        "Someone tried to create a model-go account with this email address, which already has one.\n"
        "If it was you, sign in instead, or reset your password if you forgot it:\n\n"
        f"{public_url.rstrip('/')}/login\n\n"
        "If it was not you, ignore this mail: nothing was changed.\n" + SIGNATURE
    )
    return Mail("signup_existing", "Someone tried to sign up with your address", body)


def address_in_use(public_url: str) -> Mail:
    body = (
        "Hello,\n\n"
        "Someone asked to move another model-go account to this email address, which already\n"
        "belongs to your account. Nothing was changed. If you want to use this address elsewhere,\n"
        f"change it in your own account first: {public_url.rstrip('/')}/account\n" + SIGNATURE
    )
    return Mail("email_in_use", "Your email address was entered for another account", body)


def confirm_new_email(public_url: str, username: str, token: str) -> Mail:
    body = (
        f"Hello {username},\n\n"
        "You asked to use this address for your model-go account. Confirm it here:\n\n"
        f"{_link(public_url, '/verify', token)}\n\n"
        "Until you confirm, your account keeps its current address. The link expires in 24 hours.\n"
        + SIGNATURE
    )
    return Mail("email_change", "Confirm your new email address", body)


def email_change_notice(username: str) -> Mail:
    body = (
        f"Hello {username},\n\n"
        "Someone (hopefully you) asked to change the email address of your model-go account.\n"
        "The change takes effect only once the new address is confirmed. If this was not you,\n"
        "change your password now and contact support.\n" + SIGNATURE
    )
    return Mail("email_change_notice", "Your email address is being changed", body)


def password_reset(public_url: str, username: str, token: str) -> Mail:
    body = (
        f"Hello {username},\n\n"
        "Someone asked to reset the password of your model-go account. To choose a new one:\n\n"
        f"{_link(public_url, '/reset-password', token)}\n\n"
        "The link works once and expires in 1 hour. If you did not ask, ignore this mail:\n"
        "your password stays as it is.\n" + SIGNATURE
    )
    return Mail("password_reset", "Reset your password", body)


def password_changed(username: str) -> Mail:
    body = (
        f"Hello {username},\n\n"
        "The password of your model-go account was changed and every session was signed out.\n"
        "If this was not you, reset your password at once and contact support.\n" + SIGNATURE
    )
    return Mail("password_changed", "Your password was changed", body)


def account_deleted(username: str) -> Mail:
    body = (
        f"Hello {username},\n\n"
        "Your model-go account has been deleted as you asked. Your API keys and sessions were\n"
        "revoked and your personal data erased. We keep only de-identified billing records\n"
        "(amounts, token counts, models and times), as the law requires.\n" + SIGNATURE
    )
    return Mail("account_deleted", "Your account has been deleted", body)


def new_ticket_for_staff(public_url: str, ticket_id: int) -> Mail:
    # by number only: a queued staff mail must not name a customer who may delete their account
    body = (
        f"Support ticket #{ticket_id} was opened.\n\n"
        f"Read and answer it in the admin dashboard: {public_url.rstrip('/')}/admin/tickets/{ticket_id}\n"
        + SIGNATURE
    )
    return Mail("ticket_staff", f"New support ticket #{ticket_id}", body)


def ticket_reply_for_user(public_url: str, ticket_id: int, username: str) -> Mail:
    body = (
        f"Hello {username},\n\n"
        f"Support answered your ticket #{ticket_id}. Read the answer in your dashboard:\n"
        f"{public_url.rstrip('/')}/support/{ticket_id}\n" + SIGNATURE
    )
    return Mail("ticket_reply", f"Reply to your support ticket #{ticket_id}", body)


def policy_update(public_url: str, username: str, version: str, effective_date: str) -> Mail:
    body = (
        f"Hello {username},\n\n"
        f"We have published a new version of our privacy policy (version {version}, effective\n"
        f"{effective_date}). Please read it and accept it the next time you sign in:\n\n"
        f"{public_url.rstrip('/')}/privacy\n\n"
        "If you do not agree, you can close your account from the same page; we then erase your\n"
        "personal data and keep only de-identified billing records.\n" + SIGNATURE
    )
    return Mail("policy_update", "Our privacy policy has changed", body)


def low_balance(public_url: str, username: str, balance_usd: str, threshold_usd: str) -> Mail:
    body = (
        f"Hello {username},\n\n"
        f"Your model-go balance is {balance_usd} USD, below the {threshold_usd} USD you asked to be told\n"
        "about. When it runs out, your API keys are refused until you top up:\n\n"
        f"{public_url.rstrip('/')}/billing\n\n"
        "This is the only mail until your balance is above that amount again. Change the amount or\n"
        "turn these mails off on the billing page.\n" + SIGNATURE
    )
    return Mail("low_balance", "Your model-go balance is low", body)
