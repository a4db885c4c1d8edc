"""The whole customer story in a real browser: sign up, verify by mail, log in, create a key, call the
API with the openai SDK, see it in usage and on the chart, export, change email, delete the account."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from tests.e2e.conftest import ADMIN_PASSWORD, Site, api_session, new_page, settle, shot, wait_until
from tests.support.smtp import MailBox

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple battery horse correct"


def sign_up(page: Any, email: str, username: str) -> None:
    page.goto("/signup")
    page.wait_for_selector("[data-policy-version]:not(:empty)")
    shot(page, "01-signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("I am 18 or older.").check()
    page.get_by_label(re.compile("I have read and accept the privacy policy")).check()
    page.get_by_role("button", name="Create account").click()
    page.get_by_text("Check your inbox.").wait_for()
    assert page.locator("[data-signup-email]").inner_text() == email
    shot(page, "02-signup-done")


def verify_from_mail(page: Any, mail: MailBox, to: str, subject: str) -> None:
    link = mail.wait_for(to, subject)[-1].link()
    assert urlsplit(link).path == "/verify", link
    page.goto(link)
    page.locator("[data-verify-ok]").wait_for()
    assert "confirmed" in page.locator("[data-verify-ok]").inner_text()
    assert "token=" not in page.url, "the token must leave the address bar once read"


def credit(site: Site, username: str, amount: str) -> None:
    admin, csrf = api_session(site, site.admin_login, ADMIN_PASSWORD)
    try:
        users = admin.get("/api/admin/users", params={"q": username}).json()["items"]
        resp = admin.post(
            f"/api/admin/users/{users[0]['id']}/credit",
            json={"amount_usd": amount, "note": "e2e top-up"},
            headers={"X-CSRF-Token": csrf},
        )
        assert resp.status_code == 200, resp.text
    finally:
        admin.close()


def create_key(page: Any) -> str:
    page.goto("/keys")
    settle(page)
    assert "No API keys yet" in page.locator("[data-keys]").inner_text()
    page.get_by_label("Name").fill("story key")
    page.get_by_label(re.compile("Allowed models")).fill("gpt-mock")
    expiry = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    page.get_by_label(re.compile("Expires on")).fill(expiry)
    page.get_by_role("button", name="Create key").click()
    secret_box = page.locator("[data-secret-box]")
    secret_box.wait_for()
    secret: str = page.locator("[data-secret]").input_value()
    assert secret and len(secret) > 20
    page.get_by_role("button", name="Copy").click()
    page.get_by_text("Copied to the clipboard.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    row = page.locator("[data-keys] tr", has_text="story key")
    row.wait_for()
    assert "gpt-mock" in row.inner_text() and expiry in row.inner_text() and "active" in row.inner_text()
    assert secret not in row.inner_text(), "the list shows only the prefix"
    shot(page, "05-key-created")
    page.get_by_role("button", name="I have saved it").click()
    assert secret_box.is_hidden() and page.locator("[data-secret]").input_value() == ""
    return secret


def call_api(site: Site, secret: str) -> None:
    site.gw.wait_key_live(secret)
    client = openai.OpenAI(base_url=site.url + "/v1", api_key=secret, max_retries=0, timeout=30)
    for text in ("hello from the browser test", "second call"):
        reply = client.chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": text}])
        assert reply.choices[0].message.content == f"echo: {text}"
    stream = client.chat.completions.create(
        model="gpt-mock", messages=[{"role": "user", "content": "streamed"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: streamed"
    with pytest.raises(openai.PermissionDeniedError):  # the key is restricted to gpt-mock
        client.chat.completions.create(model="text-embed-mock", messages=[{"role": "user", "content": "x"}])


def check_usage(page: Any) -> None:
    def three_rows() -> bool:
        page.goto("/usage")
        settle(page)
        return (
            page.locator("[data-rows] tr").count() == 3
            and "gpt-mock" in page.locator("[data-rows]").inner_text()
        )

    wait_until(three_rows, what="three usage rows on the usage page")
    rows = page.locator("[data-rows]").inner_text()
    assert rows.count("story key") == 3 and rows.count("200") == 3
    assert "Page 1 of 1 · 3 rows" in page.locator("[data-page-info]").inner_text()
    shot(page, "06-usage")
    page.get_by_label("Model", exact=True).fill("no-such-model")
    page.get_by_role("button", name="Apply").click()
    page.get_by_text("No requests match these filters.").wait_for()
    assert "model=no-such-model" in page.url
    page.get_by_label("Model", exact=True).fill("gpt-mock")
    key_select = page.locator("#usage-filters select[name=key_id]")
    key_label = key_select.locator("option", has_text="story key").text_content()
    key_select.select_option(label=key_label)
    page.get_by_role("button", name="Apply").click()
    page.locator("[data-rows] tr", has_text="gpt-mock").first.wait_for()
    assert page.locator("[data-rows] tr").count() == 3
    with page.expect_download() as info:
        page.get_by_role("button", name="Download CSV").click()
    table = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
    assert len(table) == 3 and {r["model"] for r in table} == {"gpt-mock"}
    assert all(int(r["cost_micros"]) > 0 for r in table)


def check_overview(page: Any) -> None:
    page.goto("/")
    settle(page)
    page.wait_for_function("() => window.Chart && Chart.getChart(document.querySelector('#chart-requests'))")
    series = page.evaluate(
        """() => ['#chart-requests', '#chart-spend'].map(id => Chart.getChart(document.querySelector(id))
               .data.datasets.map(d => [d.label, d.data.reduce((a, b) => a + b, 0)]))"""
    )
    assert series[0] == [["gpt-mock", 3]], series
    assert series[1][0][0] == "gpt-mock" and series[1][0][1] > 0
    assert page.locator("[data-stat=requests]").inner_text() == "3"
    assert page.locator("[data-models]").inner_text().startswith("gpt-mock")
    balance = page.locator("[data-stat=balance]").inner_text()
    assert balance.startswith("$4.99"), balance  # $5 credit less three requests of a few micro-dollars
    shot(page, "07-overview-chart")


def check_billing(page: Any) -> None:
    page.goto("/billing")
    settle(page)
    ledger = page.locator("[data-rows]").inner_text()
    # an operator's credit (`model-go credit add`) is an adjustment on the ledger; Stripe's are top-ups
    assert "Adjustment" in ledger and "+$5.00" in ledger and "e2e top-up" in ledger
    assert ledger.count("Charge") == 3
    assert "Card payments are not available on this server" in page.locator("main").inner_text()
    assert page.get_by_role("button", name=re.compile("top.?up|pay", re.I)).count() == 0
    shot(page, "08-billing")


def check_export(page: Any, email: str, secret: str) -> None:
    page.goto("/privacy")
    settle(page)
    shot(page, "09-privacy")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download my data (JSON)").click()
    assert re.fullmatch(r"model-go-export-\d+-\d{4}-\d{2}-\d{2}\.json", info.value.suggested_filename)
    raw = Path(info.value.path()).read_text()
    assert secret not in raw and PASSWORD not in raw
    data = json.loads(raw)
    assert email in raw
    assert len(json.dumps(data)) > 200


def change_email(page: Any, mail: MailBox, old: str, new: str) -> None:
    page.goto("/profile")
    settle(page)
    assert page.get_by_label("Email").input_value() == old
    page.get_by_label("Email").fill(new)
    page.get_by_role("button", name="Save changes").click()
    notice = page.locator("[data-pending-email]")
    notice.wait_for()
    assert new in notice.inner_text() and old in notice.inner_text()
    shot(page, "10-email-pending")
    verify_from_mail(page, mail, new, "Confirm your new email")
    page.goto("/profile")
    settle(page)
    assert page.get_by_label("Email").input_value() == new
    assert page.locator("[data-pending-email]").is_hidden()


def change_password(page: Any) -> None:
    page.goto("/profile")
    settle(page)
    page.get_by_label("Current password").fill("not the password")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    error = page.locator("#password-form [data-form-error]")
    error.wait_for()
    assert error.inner_text() == "The password is not correct."
    assert page.get_by_label("Current password").get_attribute("aria-invalid") == "true"
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_role("button", name="Change password").click()
    page.get_by_text("Password changed.").wait_for()
    # this browser got a fresh session: it still works, and a state-changing call passes CSRF
    page.goto("/profile")
    settle(page)
    assert page.url.endswith("/profile")


def delete_account(page: Any, site: Site, secret: str, email: str) -> None:
    page.goto("/privacy#delete")
    settle(page)
    form = page.locator("#delete-form")
    form.get_by_label("Your password").fill(NEW_PASSWORD)
    form.get_by_label(re.compile("cannot be undone")).check()
    page.once("dialog", lambda d: d.accept())
    form.get_by_role("button", name="Delete my account").click()
    page.wait_for_url(re.compile(r"/goodbye$"))
    shot(page, "11-goodbye")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=site.url + "/v1", api_key=secret, max_retries=0).models.list()
    resp = httpx.post(site.url + "/api/auth/login", json={"login": email, "password": NEW_PASSWORD})
    assert resp.status_code == 401
    page.goto("/keys")
    page.wait_for_url(re.compile(r"/login\?next=%2Fkeys"))


def test_whole_story_in_the_browser(browser: Any, site: Site) -> None:
    name = "story" + uuid.uuid4().hex[:6]
    email, new_email = f"{name}@example.com", f"{name}.new@example.org"
    page = new_page(browser, site)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)

    sign_up(page, email, name)
    verify_from_mail(page, site.mail, email, "Confirm your email")
    shot(page, "03-verified")
    page.get_by_role("button", name="Continue to log in").click()
    page.get_by_label("Email or username").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(site.url + "/")
    settle(page)
    assert "No requests in the last 30 days" in page.locator("main").inner_text()
    assert page.locator("[data-stat=balance]").inner_text() == "$0.00"
    shot(page, "04-overview-empty")

    credit(site, name, "5")
    secret = create_key(page)
    call_api(site, secret)
    check_usage(page)
    check_overview(page)
    check_billing(page)
    check_export(page, email, secret)
    change_email(page, site.mail, email, new_email)
    change_password(page)
    delete_account(page, site, secret, new_email)
    assert page.errors == [], page.errors
    page.context.close()
