"""After login the browser goes to `next` only when it names a path on this site (open-redirect families)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from tests.e2e.conftest import Site, new_page

PASSWORD = "redirect-password-77"

# values a lax check lets through and a browser then reads as another origin (or a script)
HOSTILE = [
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r/evil.example",
    "\t//evil.example",
    " //evil.example",
    "\x00//evil.example",
    "/\x0b/evil.example",
    "/%2F/evil.example",
    "/%2f%2fevil.example",
    "%2F%2Fevil.example",
    "/%5Cevil.example",
    "/%09/evil.example",
    "%09//evil.example",
    "/%0A/evil.example",
    "https://evil.example",
    "https:evil.example",
    "http:/evil.example",
    "HTTPS://evil.example",
    "javascript:alert(1)",
    "jAvAsCrIpT:alert(1)",
    " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "\uff0f\uff0fevil.example",  # fullwidth solidus
    "\u2215\u2215evil.example",  # division slash
    "evil.example",
    "",
    "%",
    "/%E0%A4%A",
]
SAME_SITE = {
    "/usage": "/usage",
    "/usage?model=gpt-mock": "/usage?model=gpt-mock",
    "/keys#new": "/keys#new",
    "/admin/../keys": "/keys",
}


def test_the_validator_refuses_every_bypass_family(browser: Any, site: Site) -> None:
    page = new_page(browser, site)
    page.goto("/login")
    results = page.evaluate("(values) => values.map((v) => window.MG.safeNext(v))", HOSTILE)
    let_through = {value: result for value, result in zip(HOSTILE, results, strict=True) if result != "/"}
    assert let_through == {}
    kept = page.evaluate("(values) => values.map((v) => window.MG.safeNext(v))", list(SAME_SITE))
    assert kept == list(SAME_SITE.values())


@pytest.fixture(scope="module")
def customer(site: Site) -> str:
    name = "redir" + uuid.uuid4().hex[:6]
    site.gw.cli(
        "user", "add", name, "--email", f"{name}@example.com", "--password-stdin", input=PASSWORD + "\n"
    )
    return name


@pytest.mark.parametrize(
    "next_value",
    ["/\t/evil.example", "/\\evil.example", "/%2F/evil.example", "https:evil.example", "javascript:alert(1)"],
)
def test_login_never_leaves_the_site(browser: Any, site: Site, customer: str, next_value: str) -> None:
    page = new_page(browser, site)
    page.goto("/login?next=" + quote(next_value, safe=""))
    page.get_by_label("Email or username").fill(customer)
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state("domcontentloaded")
    final = urlsplit(page.url)
    assert (final.scheme, final.netloc) == tuple(urlsplit(site.url)[:2]), page.url
    assert final.path == "/"


def test_login_still_follows_a_same_site_next(browser: Any, site: Site, customer: str) -> None:
    page = new_page(browser, site)
    page.goto("/login?next=" + quote("/usage?model=gpt-mock", safe=""))
    page.get_by_label("Email or username").fill(customer)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(site.url + "/usage?model=gpt-mock")
