"""Browser tests: real headless Chromium (Debian's) driving the real server, with mail on loopback SMTP."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import ARTIFACTS, add_mock_channel, make_gateway
from tests.support.gateway import Gateway
from tests.support.mock_openai import MockUpstream
from tests.support.smtp import MailBox

T = TypeVar("T")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
SHOTS = ARTIFACTS / "screenshots"
ADMIN_PASSWORD = "admin-password-1234"


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail("/usr/bin/chromium is missing: .ci/run must install Debian's chromium package")
    pytest.skip("/usr/bin/chromium is missing (apt-get install chromium): skipping the browser tests")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped on purpose: Playwright's sync API keeps an event loop running on this thread
    while it is open, and under pytest-xdist the same worker then runs other modules whose
    asyncio.run() calls would fail. Closing it at the end of each module gives the thread back."""
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def mailbox() -> Iterator[MailBox]:
    box = MailBox().start()
    yield box
    box.stop()


@dataclass
class Site:
    """The running server, its mailbox, and an admin account to sign in with."""

    gw: Gateway
    mail: MailBox
    admin_login: str
    admin_email: str

    @property
    def url(self) -> str:
        return self.gw.base_url


@pytest.fixture(scope="module")
def site(
    upstream: MockUpstream, mailbox: MailBox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    site = start_site(tmp_path_factory.mktemp("e2e"), upstream, mailbox)
    yield site
    site.gw.stop()


def start_site(tmp: Path, upstream: MockUpstream, mailbox: MailBox, **env: str) -> Site:
    """A started SQLite gateway with mail, the mock channel and an admin account (extra settings in env)."""
    gw = make_gateway(
        tmp,
        "sqlite",
        MODELGO_INSECURE_COOKIES="true",  # plain http on loopback: no Secure cookie, no __Host- prefix
        **mailbox.env(),
        **env,
    )
    gw.extra_env["MODELGO_PUBLIC_URL"] = gw.base_url
    in_thread(lambda: add_mock_channel(gw, upstream))
    admin = "admin" + uuid.uuid4().hex[:6]
    email = f"{admin}@example.com"
    gw.cli("user", "add", admin, "--email", email, "--admin", "--password-stdin", input=ADMIN_PASSWORD + "\n")
    gw.start()
    return Site(gw=gw, mail=mailbox, admin_login=admin, admin_email=email)


def in_thread(work: Callable[[], T]) -> T:
    """Run `work` off this thread: Playwright's sync API keeps an event loop running here, and
    Gateway.db() needs asyncio.run()."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(work).result()


def new_page(browser: Any, site: Site, viewport: dict[str, int] = DESKTOP) -> Any:
    context = browser.new_context(viewport=viewport, base_url=site.url, accept_downloads=True)
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    # console errors include CSP refusals; an API error answer (4xx) is logged too, and is expected
    page.on(
        "console",
        lambda msg: (
            page.errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    return page


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/screenshots/ (gitignored)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")  # the sidebar is sticky: from the top it shows as users see it
    page.screenshot(path=str(path), full_page=True)
    return path


def settle(page: Any) -> None:
    """Wait until the page's data has loaded: no request in flight and no busy marker left."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function("() => !document.querySelector('main [aria-busy=true]')")


def login(page: Any, login_name: str, password: str, next_path: str = "/") -> None:
    page.goto("/login" + (f"?next={next_path}" if next_path != "/" else ""))
    page.get_by_label("Email or username").fill(login_name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(re.escape(next_path) + r"$"))
    settle(page)


def api_session(site: Site, login_name: str, password: str) -> tuple[httpx.Client, str]:
    """An httpx client signed in through the API (for setting up data), and its CSRF token."""
    client = httpx.Client(base_url=site.url, timeout=30)
    resp = client.post("/api/auth/login", json={"login": login_name, "password": password})
    assert resp.status_code == 200, resp.text
    return client, resp.json()["csrf_token"]


def wait_until(check: Any, timeout: float = 10, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
