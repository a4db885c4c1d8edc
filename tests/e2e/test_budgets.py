"""Browser tests of key budgets and rate limits (keys page), a user's rate limits (admin users
page), and the low-balance reminder (billing page and banner)."""

from __future__ import annotations

from typing import Any

from model_go.services import limits
from model_go.storage import repo
from tests.e2e.conftest import ADMIN_PASSWORD, Site, in_thread, login, new_page, settle, shot
from tests.e2e.test_billing import PASSWORD, accept_policy, customer


def test_keys_page_sets_budgets_and_rate_limits_like_the_cli(browser: Any, site: Site) -> None:
    name = customer(site)
    page = new_page(browser, site)
    login(page, name, PASSWORD, "/keys")
    accept_policy(page)
    form = page.locator("#key-form")
    form.locator("[name=name]").fill("budgeted")
    form.locator("[name=budget_usd]").fill("0.50")
    form.locator("[name=budget_period]").select_option("week")
    form.locator("[name=lifetime_budget_usd]").fill("2")
    page.get_by_label("Requests per minute").fill("30")
    page.get_by_label("Requests at a time").fill("2")
    page.get_by_role("button", name="Create key").click()
    page.locator("[data-secret-box]").wait_for()
    row = page.locator("[data-keys] tr", has_text="budgeted")
    row.locator("[data-budget]", has_text="$0.50 a week, $2.00 in all").wait_for()
    row.locator("[data-limits]", has_text="30 requests/min, 2 at a time").wait_for()
    listed = in_thread(lambda: site.gw.cli("key", "list", name).stdout)
    assert "$0.50 weekly, $2.00 lifetime" in listed  # the same budget the CLI would set
    assert "30 rpm, 2 concurrent" in " ".join(listed.split())  # and the same limits

    row.get_by_role("button", name="Budget of key budgeted").click()
    edit = page.locator("#budget-form")
    assert edit.locator("[name=budget_usd]").input_value() == "0.5"
    assert edit.locator("[name=budget_period]").input_value() == "week"
    edit.locator("[name=budget_usd]").fill("0")
    page.get_by_role("button", name="Save budget").click()
    edit.locator("[data-form-error]", has_text="more than 0").wait_for()  # the API's own message
    assert edit.locator("[name=budget_usd]").get_attribute("aria-invalid") == "true"
    edit.locator("[name=budget_usd]").fill("")  # removes the weekly budget
    edit.locator("[name=lifetime_budget_usd]").fill("3")
    page.get_by_role("button", name="Save budget").click()
    row.locator("[data-budget]", has_text="$3.00 in all").wait_for()
    assert "weekly" not in row.inner_text() and "a week" not in row.inner_text()
    listed = in_thread(lambda: site.gw.cli("key", "list", name).stdout)
    assert "$3.00 lifetime" in listed and "weekly" not in listed
    shot(page, "70-keys-budgets")
    assert page.errors == [], page.errors


def test_admin_sets_a_users_tier_and_own_limits(browser: Any, site: Site) -> None:
    name = customer(site)

    async def tier(conn: Any, _k: Any) -> None:
        await limits.set_tier(conn, "e2e-gold", limits.LimitChange(rpm=600, tpm=90_000))

    in_thread(lambda: site.gw.db(tier))
    admin = new_page(browser, site)
    login(admin, site.admin_login, ADMIN_PASSWORD, "/admin/users")
    admin.get_by_role("searchbox", name="Search users").fill(name)
    admin.get_by_role("button", name="Search").click()
    row = admin.locator("[data-users] tr", has_text=name)
    row.get_by_role("button", name=f"Rate limits of {name}").click()
    dialog = admin.locator("#limits-form")
    dialog.wait_for()
    assert dialog.locator("[name=tier]").input_value() == "default"
    dialog.locator("[name=tier]").select_option("e2e-gold")
    dialog.locator("[data-tier-limits]", has_text="600 requests/min, 90,000 tokens/min").wait_for()
    dialog.get_by_label("Requests at a time").fill("0")
    dialog.get_by_role("button", name="Save limits").click()
    dialog.locator("[data-form-error]", has_text="Requests at a time").wait_for()  # refused before sending
    assert dialog.get_by_label("Requests at a time").get_attribute("aria-invalid") == "true"
    dialog.get_by_label("Requests at a time").fill("3")
    dialog.get_by_role("button", name="Save limits").click()
    dialog.wait_for(state="hidden")
    user = in_thread(lambda: site.gw.db(lambda c, _k: repo.user_by_username(c, name)))
    assert user is not None
    assert (user.tier, user.rpm_limit, user.tpm_limit, user.max_concurrency) == ("e2e-gold", None, None, 3)
    row.get_by_role("button", name=f"Rate limits of {name}").click()
    assert dialog.get_by_label("Requests at a time").input_value() == "3"
    shot(admin, "72-admin-user-limits")
    assert admin.errors == [], admin.errors


def test_low_balance_reminder_and_banner(browser: Any, site: Site) -> None:
    name = customer(site)
    in_thread(lambda: site.gw.cli("credit", "add", name, "1"))
    page = new_page(browser, site)
    login(page, name, PASSWORD, "/billing")
    accept_policy(page)
    banner = page.get_by_role("region", name="Low balance")
    assert banner.count() == 0
    reminder = page.locator("#low-balance-form")
    reminder.locator("[name=low_balance_usd]").fill("abc")
    page.get_by_role("button", name="Save reminder").click()
    reminder.locator("[data-form-error]").wait_for()
    reminder.locator("[name=low_balance_usd]").fill("5")
    page.get_by_role("button", name="Save reminder").click()
    banner.wait_for()
    assert "$1.00" in banner.inner_text() and "$5.00" in banner.inner_text()
    page.goto("/keys")  # the reminder shows on every page while the balance is below
    settle(page)
    page.get_by_role("region", name="Low balance").wait_for()
    shot(page, "71-low-balance-banner")
    page.goto("/billing")
    settle(page)
    reminder = page.locator("#low-balance-form")
    assert reminder.locator("[name=low_balance_usd]").input_value() == "5"
    reminder.locator("[name=low_balance_usd]").fill("0")
    page.get_by_role("button", name="Save reminder").click()
    page.get_by_role("region", name="Low balance").wait_for(state="detached")
    assert page.errors == [], page.errors
