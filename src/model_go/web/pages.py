"""Page routes: each serves a server-rendered shell; the browser fills it from the JSON API (/api/)."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles

from model_go import __version__
from model_go.web.headers import PAGE_HEADERS, StaticHeaders

if TYPE_CHECKING:
    from jinja2 import Environment

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"


@dataclass(frozen=True)
class Page:
    path: str
    template: str
    title: str
    # public: anyone; app: a signed-in user; admin: an admin (the API enforces it, the page only hides)
    access: str = "app"
    section: str = ""


PAGES: tuple[Page, ...] = (
    Page("/signup", "auth/signup.html", "Create your account", "public"),
    Page("/verify", "auth/verify.html", "Verify your email", "public"),
    Page("/login", "auth/login.html", "Log in", "public"),
    Page("/forgot", "auth/forgot.html", "Forgot your password", "public"),
    Page("/reset-password", "auth/reset.html", "Choose a new password", "public"),
    Page("/policy", "auth/policy.html", "Privacy policy", "public"),
    Page("/goodbye", "auth/goodbye.html", "Account closed", "public"),
    Page("/", "account/overview.html", "Overview", section="overview"),
    Page("/keys", "account/keys.html", "API keys", section="keys"),
    Page("/usage", "account/usage.html", "Usage", section="usage"),
    Page("/billing", "account/billing.html", "Billing", section="billing"),
    Page("/profile", "account/profile.html", "Profile", section="profile"),
    Page("/privacy", "account/privacy.html", "Privacy and your data", section="privacy"),
    Page("/support", "account/support.html", "Support", section="support"),
    Page("/support/{ticket_id:int}", "account/ticket.html", "Support ticket", section="support"),
    Page("/admin/users", "admin/users.html", "Users", "admin", "admin"),
    Page("/admin/channels", "admin/channels.html", "Channels", "admin", "admin"),
    Page("/admin/prices", "admin/prices.html", "Prices", "admin", "admin"),
    Page("/admin/codes", "admin/codes.html", "Redemption codes", "admin", "admin"),
    Page("/admin/usage", "admin/usage.html", "Usage across users", "admin", "admin"),
    Page("/admin/tickets", "admin/tickets.html", "Support tickets", "admin", "admin"),
    Page("/admin/tickets/{ticket_id:int}", "admin/ticket.html", "Support ticket", "admin", "admin"),
    Page("/admin/policies", "admin/policies.html", "Privacy policy versions", "admin", "admin"),
)

# Old or natural spellings of page paths, so a hand-typed or mailed URL still lands.
REDIRECTS: dict[str, str] = {
    "/register": "/signup",
    "/reset": "/reset-password",
    "/password-reset": "/reset-password",
    "/admin": "/admin/users",
    "/dashboard": "/",
}


@cache
def asset_version(relative: str) -> str:
    """A short content hash, so an asset URL changes exactly when the file does."""
    return hashlib.sha256((STATIC_DIR / relative).read_bytes()).hexdigest()[:12]


def asset_url(relative: str) -> str:
    return f"/static/{relative}?v={asset_version(relative)}"


@cache
def environment() -> Environment:
    """The templates, loaded when the first page is asked for: a server that only relays /v1 never
    imports jinja2 (4 MiB of its memory)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(asset=asset_url, version=__version__)
    return env


Handler = Callable[[Request], Awaitable[Response]]


def _page_handler(page: Page) -> Handler:
    async def render(request: Request) -> Response:
        template = environment().get_template(page.template)  # compiled once, then cached by jinja2
        html = template.render(page=page, path_params=request.path_params, request_path=request.url.path)
        headers = {**PAGE_HEADERS, "Cache-Control": "no-store"}
        return HTMLResponse(html, headers=headers)

    return render


def _redirect_handler(target: str) -> Handler:
    async def redirect(request: Request) -> Response:
        query = request.url.query
        joiner = "&" if "?" in target else "?"
        return RedirectResponse(target + (joiner + query if query else ""), status_code=307)

    return redirect


def page_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    for page in PAGES:
        router.add_api_route(page.path, _page_handler(page), methods=["GET"], name=page.template)
    for source, target in REDIRECTS.items():
        router.add_api_route(source, _redirect_handler(target), methods=["GET"])
    return router


NOT_FOUND = Page("", "auth/not_found.html", "Page not found", "public")


def not_found_page() -> HTMLResponse:
    """The 404 a browser gets for an unknown page address (APIs keep their JSON 404)."""
    html = (
        environment().get_template(NOT_FOUND.template).render(page=NOT_FOUND, path_params={}, request_path="")
    )
    return HTMLResponse(html, status_code=404, headers={**PAGE_HEADERS, "Cache-Control": "no-store"})


def mount_dashboard(app: FastAPI) -> None:
    """Mount the page routes and /static on the app (called once from create_app)."""
    app.include_router(page_router())
    # gzip: the vendored files shrink ~3x (Chart.js 209 KB -> 71 KB); each is fetched once, then cached
    static = GZipMiddleware(StaticHeaders(StaticFiles(directory=STATIC_DIR)), minimum_size=1024)
    app.mount("/static", static, name="static")
