"""Browser tests of billing: a card top-up via (fake) Stripe Checkout, redeeming a code, adjustments."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.billing.conftest import stripe_env, stripe_fake
from tests.e2e.conftest import ADMIN_PASSWORD, Site, login, new_page, settle, shot, start_site
from tests.support.mock_openai import MockUpstream
from tests.support.mock_stripe import MockStripe, event, paid_session, sign
from tests.support.smtp import MailBox

PASSWORD = "customer-password-1234"
__all__ = ["stripe_fake"]


@pytest.fixture(scope="module")
def pay_site(
    upstream: MockUpstream,
    mailbox: MailBox,
    stripe_fake: MockStripe,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:
    site = start_site(tmp_path_factory.mktemp("e2e-pay"), upstream, mailbox, **stripe_env(stripe_fake))
    yield site
    site.gw.stop()


def customer(site: Site) -> str:
    name = "cust" + uuid.uuid4().hex[:6]
    site.gw.cli(
        "user", "add", name, "--email", f"{name}@example.com", "--password-stdin", input=PASSWORD + "\n"
    )
    return name


def accept_policy(page: Any) -> None:
    banner = page.get_by_role("region", name="Privacy policy update")
    banner.wait_for()
    banner.get_by_role("button", name=re.compile("Accept version")).click()
    banner.wait_for(state="detached")


def test_card_top_up_goes_to_stripe_and_comes_back_credited(
    browser: Any, pay_site: Site, stripe_fake: MockStripe
) -> None:
    name = customer(pay_site)
    page = new_page(browser, pay_site)
    login(page, name, PASSWORD, "/billing")
    accept_policy(page)
    page.get_by_label("Top-up amount (USD)").fill("3")
    page.get_by_role("button", name="Pay with card").click()
    page.locator("#topup-form [data-form-error]", has_text="between 5 and 500 USD").wait_for()
    page.get_by_label("Top-up amount (USD)").fill("25")
    page.get_by_role("button", name="Pay with card").click()
    page.wait_for_url(re.compile(r"/pay/cs_test_"))
    assert page.get_by_role("heading", name="Fake Stripe Checkout").is_visible()
    session = stripe_fake._session(page.url.rsplit("/", 1)[1])
    payload = event("checkout.session.completed", paid_session(session))
    sent = httpx.post(
        pay_site.url + "/api/billing/stripe/webhook",
        content=payload,
        headers={"stripe-signature": sign(payload)},
    )
    assert sent.json()["outcome"] == "credited"
    page.goto("/billing?topup=success")
    settle(page)
    assert "being confirmed" in page.locator("[data-topup-result]").inner_text()
    assert page.locator("[data-stat=balance]").inner_text() == "$25.00"
    assert "Card top-up" in page.locator("[data-rows]").inner_text()
    receipt = page.locator("[data-topups] tr").first.inner_text()
    assert "paid" in receipt and "$25.00" in receipt and "pi_" in receipt
    shot(page, "60-billing-card-top-up")
    assert page.errors == [], page.errors


def test_admin_creates_codes_and_a_customer_redeems_one(browser: Any, pay_site: Site) -> None:
    admin = new_page(browser, pay_site)
    login(admin, pay_site.admin_login, ADMIN_PASSWORD, "/admin/codes")
    admin.get_by_label("Amount per code (USD)").fill("4.50")
    admin.get_by_label("Number of codes").fill("2")
    admin.get_by_label(re.compile("^Note")).fill("e2e batch")
    admin.get_by_role("button", name="Create codes").click()
    codes = admin.locator("[data-codes-text]")
    codes.wait_for()
    first = codes.inner_text().split()[0]
    assert first.startswith("MGC-")
    admin.locator("[data-batches] tr", has_text="e2e batch").wait_for()
    shot(admin, "61-admin-codes")

    name = customer(pay_site)
    page = new_page(browser, pay_site)
    login(page, name, PASSWORD, "/billing")
    accept_policy(page)
    page.get_by_role("textbox", name="Code").fill(first.lower())
    page.get_by_role("button", name="Redeem").click()
    page.locator("[data-stat=balance]", has_text="$4.50").wait_for()
    page.get_by_role("textbox", name="Code").fill(first)
    page.get_by_role("button", name="Redeem").click()
    error = page.locator("#redeem-form [data-form-error]")
    error.wait_for()
    assert "already redeemed" in error.inner_text()
    admin.reload()
    settle(admin)
    assert "1 / 2" in admin.locator("[data-batches] tr", has_text="e2e batch").inner_text()
    assert page.errors == [] and admin.errors == []


def test_admin_debits_a_balance_with_a_reason(browser: Any, pay_site: Site) -> None:
    name = customer(pay_site)
    admin = new_page(browser, pay_site)
    login(admin, pay_site.admin_login, ADMIN_PASSWORD, "/admin/users")
    admin.get_by_role("searchbox", name="Search users").fill(name)
    admin.get_by_role("button", name="Search").click()
    row = admin.locator("[data-users] tr", has_text=name)
    row.get_by_role("button", name="Credit").click()
    admin.get_by_label("Action").select_option("debit")
    admin.get_by_label("Amount (USD)").fill("2")
    admin.get_by_label(re.compile("^Note")).fill("chargeback fee")
    admin.locator("#credit-form").get_by_role("button", name="Debit").click()
    admin.locator("[data-users] tr", has_text="-$2.00").wait_for()
    assert admin.errors == [], admin.errors
