"""Fixtures for the /api tests: a loopback SMTP server and a gateway wired to it and to the mock upstream."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import add_mock_channel, make_gateway
from tests.support.gateway import Gateway, drop_pg_database
from tests.support.mock_openai import MockUpstream
from tests.support.smtp import MailBox

PASSWORD = "correct horse battery staple"
POLICY = "2026-05-17"
ADMIN_PASSWORD = "admin password 1234"


@pytest.fixture(scope="session")
def mailbox() -> Iterator[MailBox]:
    box = MailBox().start()
    yield box
    box.stop()


def start_api_gateway(
    tmp: Path, backend: str, upstream: MockUpstream, mailbox: MailBox, *, insecure: bool = True, **env: str
) -> Gateway:
    """A gateway with SMTP to `mailbox`, a channel to the mock upstream, prices, and an admin user."""
    settings = {
        **mailbox.env(),
        "MODELGO_DEMO": "false",
        "MODELGO_LOGIN_MAX_FAILURES_PER_IP": "1000",
        "MODELGO_LOGIN_MAX_FAILURES_PER_ACCOUNT": "50",
        "MODELGO_MAIL_MAX_PER_IP": "100000",
        "MODELGO_MAIL_MAX_PER_ADDRESS": "1000",
        **env,
    }
    if insecure:
        settings["MODELGO_INSECURE_COOKIES"] = "true"
    gw = make_gateway(tmp, backend, **settings)
    gw.extra_env["MODELGO_PUBLIC_URL"] = gw.base_url
    add_mock_channel(gw, upstream)
    gw.cli(
        "user",
        "add",
        "admin",
        "--email",
        admin_email(gw),
        "--admin",
        "--password-stdin",
        input=ADMIN_PASSWORD + "\n",
    )
    return gw.start()


def admin_email(gw: Gateway) -> str:
    """Unique per gateway: every gateway of the session mails the same loopback SMTP server."""
    return f"admin-{gw.port}@model-go.test"


def stop_gateway(gw: Gateway) -> None:
    gw.stop()
    if gw.database_url:
        drop_pg_database(gw.database_url)


@pytest.fixture(scope="module")
def api_gw(
    backend: str, upstream: MockUpstream, mailbox: MailBox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gw = start_api_gateway(tmp_path_factory.mktemp(f"api-{backend}"), backend, upstream, mailbox)
    yield gw
    stop_gateway(gw)


@dataclass
class Api:
    """A browser-like client: keeps the session cookie and sends the CSRF token on writes."""

    base_url: str
    csrf: str | None = None
    http: httpx.Client = field(init=False)
    user: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base_url, timeout=30)

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        csrf: bool = True,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> httpx.Response:
        hdrs = dict(headers or {})
        if csrf and self.csrf and method.upper() in ("POST", "PATCH", "PUT", "DELETE"):
            hdrs.setdefault("X-CSRF-Token", self.csrf)
        return self.http.request(method, path, json=json, headers=hdrs, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.call("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.call("POST", path, json=json, **kw)

    def login(self, login: str, password: str = PASSWORD) -> httpx.Response:
        resp = self.post("/api/auth/login", {"login": login, "password": password})
        if resp.status_code == 200:
            self.csrf = resp.json()["csrf_token"]
            self.user = resp.json()["user"]
        return resp

    def close(self) -> None:
        self.http.close()


def current_policy(gw: Gateway) -> str:
    return str(httpx.get(gw.base_url + "/api/policy").json()["current"]["version"])


def unique(prefix: str = "u") -> str:
    return prefix + uuid.uuid4().hex[:10]


def register(
    gw: Gateway, *, username: str | None = None, email: str | None = None, password: str = PASSWORD
) -> tuple[str, str]:
    username = username or unique()
    email = email or f"{username}@example.com"
    resp = httpx.post(
        gw.base_url + "/api/auth/register",
        json={
            "email": email,
            "username": username,
            "password": password,
            "age_confirmed": True,
            "accept_policy_version": current_policy(gw),
        },
    )
    assert resp.status_code == 202, resp.text
    return username, email


def signup(gw: Gateway, mailbox: MailBox, *, password: str = PASSWORD) -> Api:
    """Register, follow the verification link from the mail, and sign in."""
    username, email = register(gw, password=password)
    token = mailbox.wait_for(email, "Confirm your email")[0].token()
    assert httpx.post(gw.base_url + "/api/auth/verify", json={"token": token}).status_code == 200
    api = Api(gw.base_url)
    resp = api.login(username, password)
    assert resp.status_code == 200, resp.text
    return api


def admin(gw: Gateway) -> Api:
    api = Api(gw.base_url)
    assert api.login("admin", ADMIN_PASSWORD).status_code == 200
    return api
