"""Every page: same-origin requests only, security headers, phone layout, error display, admin flows."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx

from model_go.web.pages import PAGES, STATIC_DIR
from tests.e2e.conftest import (
    ADMIN_PASSWORD,
    PHONE,
    Site,
    login,
    new_page,
    settle,
    shot,
)

CUSTOMER_PASSWORD = "customer-password-42"
APP_PATHS = [p.path for p in PAGES if p.access == "app" and "{" not in p.path]
ADMIN_PATHS = [p.path for p in PAGES if p.access == "admin" and "{" not in p.path]
# the first elements sticking out to the right (a table may scroll inside its own wrapper)
WIDE_ELEMENTS = """() => [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
                 && !(e.parentElement && e.parentElement.closest('.table-wrap')))
    .slice(0, 3).map(e => e.outerHTML.slice(0, 120))"""
PUBLIC_PATHS = [p.path for p in PAGES if p.access == "public"]


def new_customer(site: Site) -> str:
    name = "cust" + uuid.uuid4().hex[:6]
    site.gw.cli(
        "user",
        "add",
        name,
        "--email",
        f"{name}@example.com",
        "--password-stdin",
        input=CUSTOMER_PASSWORD + "\n",
    )
    return name


def accept_policy_banner(page: Any) -> None:
    """Users created by the CLI have accepted no policy yet: the banner asks, and one click accepts."""
    banner = page.get_by_role("region", name="Privacy policy update")
    banner.wait_for()
    banner.get_by_role("button", name=re.compile("Accept version")).click()
    banner.wait_for(state="detached")


def test_vendored_assets_match_their_hashes() -> None:
    sums = (STATIC_DIR / "vendor" / "SHA256SUMS").read_text().split("\n")
    entries = [line.split() for line in sums if line.strip()]
    assert {name for _, name in entries} >= {"pico.min.css", "htmx.min.js", "chart.umd.min.js"}
    for digest, name in entries:
        assert hashlib.sha256((STATIC_DIR / "vendor" / name).read_bytes()).hexdigest() == digest, name


def test_no_page_or_script_refers_to_another_origin() -> None:
    """The static check behind the browser one: no http(s) URL to elsewhere in templates or our JS/CSS."""
    web = STATIC_DIR.parent
    ours = [*web.glob("templates/**/*.html"), *STATIC_DIR.glob("js/*.js"), *STATIC_DIR.glob("css/*.css")]
    for path in ours:
        urls = re.findall(r"https?://[^\s\"'<>)]+", path.read_text())
        assert [u for u in urls if "example.com" not in u] == [], path


def test_pages_send_security_headers(site: Site) -> None:
    for path in [*PUBLIC_PATHS, *APP_PATHS, *ADMIN_PATHS, "/support/1", "/static/css/app.css"]:
        resp = httpx.get(site.url + path)
        assert resp.status_code == 200, path
        csp = resp.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["referrer-policy"] == "same-origin"
        assert "set-cookie" not in resp.headers, "a page shell sets no cookie"
    html = httpx.get(site.url + "/keys").text
    assert "<script>" not in html and " style=" not in html and " on" + "click=" not in html
    versioned = httpx.get(site.url + "/static/vendor/chart.umd.min.js?v=x")
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert versioned.headers["content-encoding"] == "gzip"
    assert httpx.get(site.url + "/static/js/core.js").headers["cache-control"] == "no-cache"


def test_signed_out_visitor_is_sent_to_login_and_back(browser: Any, site: Site) -> None:
    name = new_customer(site)
    page = new_page(browser, site)
    page.goto("/usage?model=gpt-mock")
    page.wait_for_url(re.compile(r"/login\?next="))
    assert "Please log in to continue." in page.locator("[data-login-notice]").inner_text()
    page.get_by_label("Email or username").fill(name)
    page.get_by_label("Password").fill(CUSTOMER_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/usage\?model=gpt-mock$"))
    page.goto("/login?next=//evil.example.com/x")
    page.get_by_label("Email or username").fill(name)
    page.get_by_label("Password").fill(CUSTOMER_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(site.url + "/")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/login\?logged_out=1$"))
    page.goto("/keys")
    page.wait_for_url(re.compile(r"/login\?next=%2Fkeys$"))
    assert page.errors == [], page.errors


def test_api_errors_are_shown_with_their_message(browser: Any, site: Site) -> None:
    taken = new_customer(site)
    page = new_page(browser, site)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url))
    page.goto("/login")
    page.get_by_label("Email or username").fill(taken)
    page.get_by_label("Password").fill("wrong password here")
    page.get_by_role("button", name="Log in").click()
    error = page.locator("#login-form [data-form-error]")
    error.wait_for()
    unknown = httpx.post(
        site.url + "/api/auth/login", json={"login": "nobody-" + taken, "password": "x" * 12}
    )
    assert error.inner_text() == unknown.json()["error"]["message"], "the API's own message is shown"
    shot(page, "20-login-error")

    page.goto("/signup")
    page.wait_for_selector("[data-policy-version]:not(:empty)")
    page.get_by_label("Email").fill(f"other-{taken}@example.com")
    page.get_by_label("Username").fill(taken)
    page.get_by_label("Password").fill("long enough password")
    page.get_by_label("I have read and accept the privacy policy", exact=False).check()
    page.get_by_role("button", name="Create account").click()
    error = page.locator("#signup-form [data-form-error]")
    error.wait_for()
    assert "18" in error.inner_text(), "an unticked 18+ box is refused before anything is sent"
    assert not any("/api/auth/register" in u for u in sent)
    page.get_by_label("I am 18 or older.").check()
    page.get_by_role("button", name="Create account").click()
    page.wait_for_function(
        "() => /taken/i.test(document.querySelector('#signup-form [data-form-error]').textContent)"
    )
    assert page.get_by_label("Username").get_attribute("aria-invalid") == "true"
    shot(page, "21-signup-error")
    assert page.errors == [], page.errors


def test_every_request_goes_to_the_model_go_origin(browser: Any, site: Site) -> None:
    """Walk every page as an admin (so admin pages load data too) and record every request made."""
    page = new_page(browser, site)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    for path in PUBLIC_PATHS:
        page.goto(path)
        page.wait_for_load_state("networkidle")
    login(page, site.admin_login, ADMIN_PASSWORD)
    for path in [*APP_PATHS, *ADMIN_PATHS]:
        page.goto(path)
        settle(page)
    page.goto("/")
    settle(page)
    # htmx-boosted navigation through the sidebar stays on this origin too
    page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    page.wait_for_url(site.url + "/keys")
    settle(page)
    assert page.locator("[data-keys] tr").count() >= 1
    assert len(requests) > 40
    origin = urlsplit(site.url)
    foreign = [u for u in requests if urlsplit(u)[:2] != origin[:2]]
    assert foreign == [], foreign
    assert page.errors == [], page.errors  # CSP refusals would be console errors


def test_pages_fit_a_phone(browser: Any, site: Site) -> None:
    name = new_customer(site)
    page = new_page(browser, site, PHONE)
    page.goto("/signup")
    page.wait_for_load_state("networkidle")
    shot(page, "30-phone-signup")
    login(page, name, CUSTOMER_PASSWORD)
    accept_policy_banner(page)
    nav = page.get_by_role("navigation", name="Main")
    assert nav.is_hidden(), "on a phone the menu starts closed"
    page.get_by_text("Menu", exact=True).click()
    assert nav.is_visible()
    shot(page, "31-phone-menu-open")
    for path in APP_PATHS:
        page.goto(path)
        settle(page)
        shot(page, "32-phone" + (path.replace("/", "-") if path != "/" else "-overview"))
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        wide = page.evaluate(WIDE_ELEMENTS)
        assert overflow <= 0, f"{path} scrolls sideways on a phone by {overflow}px: {wide}"
    assert page.errors == [], page.errors


def test_support_ticket_round_trip(browser: Any, site: Site) -> None:
    name = new_customer(site)
    customer = new_page(browser, site)
    login(customer, name, CUSTOMER_PASSWORD, "/support")
    customer.get_by_label("Subject").fill("Invoice question")
    customer.get_by_label("Message").fill("Can I get an invoice for May?")
    customer.get_by_role("button", name="Send").click()
    customer.locator("[data-tickets] a", has_text="Invoice question").click()
    customer.wait_for_url(re.compile(r"/support/\d+$"))
    settle(customer)
    ticket_path = urlsplit(customer.url).path

    admin = new_page(browser, site)
    login(admin, site.admin_login, ADMIN_PASSWORD, "/admin/tickets")
    admin.locator("[data-tickets] a", has_text="Invoice question").first.click()
    admin.wait_for_url(re.compile(r"/admin/tickets/\d+$"))
    settle(admin)
    assert "Can I get an invoice for May?" in admin.locator("[data-thread]").inner_text()
    admin.get_by_label("Reply as support").fill("Yes: it is on its way by email.")
    admin.get_by_role("button", name="Send reply").click()
    admin.locator("[data-thread] li.staff").wait_for()
    shot(admin, "40-admin-ticket")

    customer.goto(ticket_path)
    settle(customer)
    assert "Yes: it is on its way by email." in customer.locator("[data-thread] li.staff").inner_text()
    assert "answered" in customer.locator("[data-ticket-meta]").inner_text()
    shot(customer, "41-customer-ticket")
    assert customer.errors == [] and admin.errors == []


def test_admin_pages_manage_users_channels_prices_and_policy(browser: Any, site: Site) -> None:
    name = new_customer(site)
    admin = new_page(browser, site)
    login(admin, site.admin_login, ADMIN_PASSWORD, "/admin/users")
    admin.get_by_role("searchbox", name="Search users").fill(name)
    admin.get_by_role("button", name="Search").click()
    row = admin.locator("[data-users] tr", has_text=name)
    row.wait_for()
    assert admin.locator("[data-users] tr").count() == 1
    row.get_by_role("button", name="Credit").click()
    admin.get_by_label("Amount (USD)").fill("12.50")
    admin.get_by_label(re.compile("^Note")).fill("bank transfer")
    admin.locator("#credit-form").get_by_role("button", name="Add credit").click()
    admin.locator("[data-users] tr", has_text="$12.50").wait_for()
    admin.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Disable").click()
    admin.locator("[data-users] tr", has_text="disabled").wait_for()
    shot(admin, "50-admin-users")
    row.get_by_role("button", name="Enable").click()
    admin.locator("[data-users] tr", has_text="active").wait_for()

    admin.goto("/admin/prices")
    settle(admin)
    admin.get_by_label("Model", exact=True).fill("e2e-model")
    admin.get_by_label("Input $/1M", exact=True).fill("1.5")
    admin.get_by_label("Cached input $/1M").fill("0.75")
    admin.get_by_label("Output $/1M").fill("3")
    admin.get_by_role("button", name="Save price").click()
    admin.locator("[data-prices] tr", has_text="e2e-model").wait_for()
    assert "$1.5" in admin.locator("[data-prices] tr", has_text="e2e-model").inner_text()
    admin.get_by_label("Model", exact=True).fill("e2e-fees")
    admin.get_by_label("Input $/1M", exact=True).fill("1")
    admin.get_by_label("Output $/1M").fill("2")
    admin.get_by_label("Per image $").fill("0.002")
    admin.get_by_label("Max output tokens").fill("300")
    admin.get_by_role("button", name="Save price").click()
    fees = admin.locator("[data-prices] tr", has_text="e2e-fees")
    fees.wait_for()
    assert "$0.002/image" in fees.inner_text() and "300 / catalogue" in fees.inner_text()
    admin.get_by_label("Model", exact=True).fill("e2e-free")
    admin.get_by_label("Free on purpose (no prices)").check()
    assert admin.get_by_label("Input $/1M", exact=True).is_disabled()
    admin.get_by_role("button", name="Save price").click()
    free = admin.locator("[data-prices] tr", has_text="e2e-free")
    free.wait_for()
    assert "free" in free.inner_text()
    shot(admin, "51-admin-prices")

    admin.goto("/admin/channels")
    settle(admin)
    mock_row = admin.locator("[data-channels] tr", has_text="gpt-mock")
    mock_row.get_by_role("button", name="Test channel mock").click()
    admin.wait_for_function(
        "() => /^ok · \\d+ ms$/.test(document.querySelector('[data-test-result]').textContent)"
    )
    form = admin.locator("#channel-form")
    form.get_by_label("Name").fill("e2e-backup")
    form.get_by_label("Provider").fill("openai")
    form.get_by_label("Base URL").fill("http://127.0.0.1:9/v1")
    form.get_by_label(re.compile("^API key")).fill("sk-e2e-not-a-real-key")
    form.get_by_label("Models").fill("e2e-model")
    form.get_by_label("Enabled").uncheck()
    form.get_by_role("button", name="Add channel").click()
    row = admin.locator("[data-channels] tr", has_text="e2e-backup")
    row.wait_for()
    assert "disabled" in row.inner_text() and "key stored" in row.inner_text()
    assert "sk-e2e-not-a-real-key" not in admin.content()
    row.get_by_role("button", name="Edit").click()
    form.get_by_label("Priority").fill("5")
    form.get_by_role("button", name="Save channel").click()
    admin.wait_for_function(
        "() => /e2e-backup[\\s\\S]*\\b5\\b/.test(document.querySelector('[data-channels]').innerText)"
    )
    shot(admin, "52-admin-channels")

    admin.goto("/admin/usage")
    settle(admin)
    shot(admin, "53-admin-usage")

    version = "e2e-" + uuid.uuid4().hex[:6]
    admin.goto("/admin/policies")
    settle(admin)
    admin.get_by_label("Version", exact=True).fill(version)
    admin.get_by_label("Effective date").fill("2026-12-01")
    admin.get_by_label("Full text").fill("Privacy Policy\nThe e2e version: nothing changes but the number.")
    admin.get_by_label(re.compile("every active user is emailed")).check()
    admin.once("dialog", lambda d: d.accept())
    admin.get_by_role("button", name="Publish").click()
    admin.locator("[data-policies] tr", has_text=version).wait_for()
    shot(admin, "54-admin-policies")
    site.mail.wait_for(f"{name}@example.com", "privacy policy")

    customer = new_page(browser, site)
    login(customer, name, CUSTOMER_PASSWORD, "/privacy")
    banner = customer.get_by_role("region", name="Privacy policy update")
    banner.wait_for()
    assert version in banner.inner_text()
    assert "The e2e version" in customer.locator("[data-policy-text]").inner_text()
    shot(customer, "55-policy-update-banner")
    accept_policy_banner(customer)
    customer.get_by_text(f"You accepted version {version}.").wait_for()
    assert admin.errors == [] and customer.errors == []
