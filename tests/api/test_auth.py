"""Sign-up rules, sign-in answers, sessions, CSRF, password change and reset, error shapes, OpenAPI."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import (
    ADMIN_PASSWORD,
    PASSWORD,
    POLICY,
    Api,
    register,
    signup,
    start_api_gateway,
    stop_gateway,
    unique,
)
from tests.support.gateway import Gateway
from tests.support.mock_openai import MockUpstream
from tests.support.smtp import MailBox


def body(**overrides: Any) -> dict[str, Any]:
    name = unique()
    data = {
        "email": f"{name}@example.com",
        "username": name,
        "password": PASSWORD,
        "age_confirmed": True,
        "accept_policy_version": POLICY,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not ...}


def post(gw: Gateway, path: str, json: Any) -> httpx.Response:
    return httpx.post(gw.base_url + path, json=json)


@pytest.mark.parametrize("age", [False, "true", 1, None, ...])
def test_under_18_or_unconfirmed_age_is_refused(api_gw: Gateway, age: object) -> None:
    data = body(age_confirmed=age)
    resp = post(api_gw, "/api/auth/register", data)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "age_confirmed"
    login = Api(api_gw.base_url).login(data["username"])
    assert login.status_code == 401  # no account was created


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"password": "x" * 11}, "password"),
        ({"password": "x" * 129}, "password"),
        ({"accept_policy_version": "2020-01-01"}, "accept_policy_version"),
        ({"is_admin": True}, "is_admin"),
        ({"balance_micros": 10**9}, "balance_micros"),
        ({"email": "not-an-email"}, "email"),
        ({"username": "deleted-abc"}, "username"),
    ],
)
def test_register_refusals(api_gw: Gateway, overrides: dict[str, Any], param: str) -> None:
    resp = post(api_gw, "/api/auth/register", body(**overrides))
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_register_stores_attestation_and_consent_only(api_gw: Gateway, mailbox: MailBox) -> None:
    data = body()
    first = post(api_gw, "/api/auth/register", data)
    assert first.status_code == 202
    # issue 9: the same answer for an address that has an account (its owner is told by mail)
    dup = post(api_gw, "/api/auth/register", body(email=data["email"]))
    assert (dup.status_code, dup.json()) == (first.status_code, first.json())

    async def row(conn: Any, _k: Any) -> Any:
        from sqlalchemy import select

        from model_go.storage.tables import users

        return (await conn.execute(select(users).where(users.c.username == data["username"]))).one()

    user = api_gw.db(row)
    assert user.age_confirmed_at is not None and user.policy_version == POLICY
    assert user.policy_accepted_at is not None and user.email_verified_at is None
    assert user.password_hash.startswith("$argon2id$")
    mail = mailbox.wait_for(data["email"], "Confirm your email")[0]
    assert mail.link().startswith(api_gw.base_url + "/verify?token=")


def test_unverified_login_is_refused_then_allowed(api_gw: Gateway, mailbox: MailBox) -> None:
    username, email = register(api_gw)
    api = Api(api_gw.base_url)
    resp = api.login(username)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "email_not_verified"
    bad = post(api_gw, "/api/auth/verify", {"token": "made-up"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "token"
    token = mailbox.wait_for(email, "Confirm your email")[0].token()
    assert post(api_gw, "/api/auth/verify", {"token": token}).status_code == 200
    assert api.login(email.upper()).status_code == 200  # email login is case-insensitive


def test_unknown_user_and_wrong_password_look_the_same(api_gw: Gateway, mailbox: MailBox) -> None:
    user = signup(api_gw, mailbox)
    name = user.user["username"]
    unknown_times, wrong_times = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        unknown = post(api_gw, "/api/auth/login", {"login": unique("nobody"), "password": PASSWORD})
        unknown_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        wrong = post(api_gw, "/api/auth/login", {"login": name, "password": "wrong password here"})
        wrong_times.append(time.perf_counter() - t0)
        assert unknown.status_code == wrong.status_code == 401
        assert unknown.json() == wrong.json()
    # both run one argon2 verify: without the dummy verify an unknown login answers ~50x faster
    assert statistics.median(unknown_times) > 0.5 * statistics.median(wrong_times)


def test_sessions_logout_and_new_id_at_login(api_gw: Gateway, mailbox: MailBox) -> None:
    api = signup(api_gw, mailbox)
    first_cookie = api.http.cookies.get("session")
    assert first_cookie and api.get("/api/me").status_code == 200
    assert api.login(api.user["username"]).status_code == 200
    assert api.http.cookies.get("session") != first_cookie  # a fresh id at each sign-in
    stale = httpx.get(api_gw.base_url + "/api/me", cookies={"session": first_cookie})
    assert stale.status_code == 401
    assert api.post("/api/auth/logout").status_code == 204
    assert api.get("/api/me").status_code == 401


def test_csrf_is_required_on_session_writes(api_gw: Gateway, mailbox: MailBox) -> None:
    api = signup(api_gw, mailbox)
    writes = [
        ("POST", "/api/keys", {"name": "x"}),
        ("PATCH", "/api/me", {"username": unique()}),
        ("POST", "/api/me/consent", {"marketing_emails": True}),
        ("DELETE", "/api/me", {"password": PASSWORD}),
        ("POST", "/api/tickets", {"subject": "s", "body": "b"}),
        ("DELETE", "/api/keys/1", None),
    ]
    for method, path, payload in writes:
        missing = api.call(method, path, json=payload, csrf=False)
        assert missing.status_code == 403 and missing.json()["error"]["code"] == "csrf_failed", (
            path,
            missing.text,
        )
        wrong = api.call(method, path, json=payload, csrf=False, headers={"X-CSRF-Token": "0" * 64})
        assert wrong.status_code == 403, path
    assert api.get("/api/me").json()["marketing_emails"] is False  # nothing changed
    assert api.get("/api/keys").json() == []
    ok = api.post("/api/keys", {"name": "x"})
    assert ok.status_code == 201
    # an API key needs no CSRF token (a browser never sends it by itself)
    key = ok.json()["secret"]
    by_key = httpx.post(
        api_gw.base_url + "/api/keys", json={"name": "y"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert by_key.status_code == 201


def test_password_change_ends_other_sessions(api_gw: Gateway, mailbox: MailBox) -> None:
    api = signup(api_gw, mailbox)
    other = Api(api_gw.base_url)
    assert other.login(api.user["username"]).status_code == 200
    wrong = api.post("/api/me/password", {"current_password": "nope nope nope", "new_password": "x" * 20})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "current_password"
    short = api.post("/api/me/password", {"current_password": PASSWORD, "new_password": "short"})
    assert short.status_code == 400 and short.json()["error"]["param"] == "new_password"
    new_password = "a brand new password 42"
    changed = api.post("/api/me/password", {"current_password": PASSWORD, "new_password": new_password})
    assert changed.status_code == 200
    assert changed.json()["csrf_token"] != api.csrf
    api.csrf = changed.json()["csrf_token"]
    assert api.get("/api/me").status_code == 200
    assert other.get("/api/me").status_code == 401
    assert Api(api_gw.base_url).login(api.user["username"]).status_code == 401
    assert Api(api_gw.base_url).login(api.user["username"], new_password).status_code == 200
    mailbox.wait_for(api.user["email"], "password was changed")


def test_password_reset_by_mail(api_gw: Gateway, mailbox: MailBox) -> None:
    api = signup(api_gw, mailbox)
    email = api.user["email"]
    nobody = unique("nobody") + "@example.com"
    for address in (email, nobody):
        resp = post(api_gw, "/api/auth/password-reset", {"email": address})
        assert resp.status_code == 202
    token = mailbox.wait_for(email, "Reset your password")[0].token()
    short = post(api_gw, "/api/auth/password-reset/confirm", {"token": token, "password": "short"})
    assert short.status_code == 400
    new_password = "reset password number 7"
    assert (
        post(
            api_gw, "/api/auth/password-reset/confirm", {"token": token, "password": new_password}
        ).status_code
        == 200
    )
    again = post(api_gw, "/api/auth/password-reset/confirm", {"token": token, "password": new_password + "x"})
    assert again.status_code == 400  # single use
    assert api.get("/api/me").status_code == 401  # sessions ended
    assert Api(api_gw.base_url).login(email, new_password).status_code == 200
    time.sleep(0.5)
    assert mailbox.to(nobody) == []


def test_errors_are_json_never_422(api_gw: Gateway, mailbox: MailBox) -> None:
    api = signup(api_gw, mailbox)
    cases = [
        api.http.post("/api/auth/login", content=b"{not json", headers={"content-type": "application/json"}),
        api.http.post("/api/auth/login", data={"login": "x", "password": "y"}),  # a form post
        api.get("/api/usage", params={"page": "abc"}),
        api.get("/api/usage", params={"since": "yesterday"}),
        api.get("/api/usage/summary", params={"days": 1000}),
        api.post("/api/keys", {"name": "x", "expires_at": "2001-01-01T00:00:00Z"}),
        api.post("/api/keys", {"name": "x", "models": ["bad model name!"]}),
    ]
    for resp in cases:
        assert resp.status_code == 400, resp.text
        assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    assert cases[2].json()["error"]["param"] == "page"
    assert cases[3].json()["error"]["param"] == "since"
    for resp in (api.get("/api/nothing-here"), api.call("PUT", "/api/me")):
        assert resp.status_code in (404, 405) and "error" in resp.json()


def test_openapi_documents_the_api(api_gw: Gateway) -> None:
    doc = httpx.get(api_gw.base_url + "/openapi.json").json()
    paths = doc["paths"]
    for path, method in [
        ("/api/auth/register", "post"),
        ("/api/auth/login", "post"),
        ("/api/auth/logout", "post"),
        ("/api/me", "get"),
        ("/api/me", "patch"),
        ("/api/me", "delete"),
        ("/api/me/export", "get"),
        ("/api/keys", "get"),
        ("/api/keys", "post"),
        ("/api/keys/{key_id}", "delete"),
        ("/api/usage", "get"),
        ("/api/admin/policies", "post"),
    ]:
        assert method in paths[path], (path, method)
    text = httpx.get(api_gw.base_url + "/openapi.json").text
    assert '"422"' not in text and "HTTPValidationError" not in text
    assert not any(p.startswith("/v1") for p in paths)


@pytest.fixture(scope="module")
def secure_gw(
    backend: str, upstream: MockUpstream, mailbox: MailBox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gw = start_api_gateway(
        tmp_path_factory.mktemp(f"secure-{backend}"), backend, upstream, mailbox, insecure=False
    )
    yield gw
    stop_gateway(gw)


def test_cookie_flags_in_secure_mode(secure_gw: Gateway) -> None:
    resp = httpx.post(
        secure_gw.base_url + "/api/auth/login", json={"login": "admin", "password": ADMIN_PASSWORD}
    )
    assert resp.status_code == 200
    cookie = resp.headers["set-cookie"]
    name_value, *attributes = [part.strip() for part in cookie.split(";")]
    assert name_value.startswith("__Host-session=") and len(name_value) > len("__Host-session=") + 30
    assert {"HttpOnly", "Secure", "SameSite=Lax", "Path=/"} <= set(attributes)
    assert not any(a.lower().startswith("domain") for a in attributes)  # __Host- forbids Domain
    session_id = name_value.split("=", 1)[1]
    me = httpx.get(secure_gw.base_url + "/api/me", cookies={"__Host-session": session_id})
    assert me.status_code == 200
    # the insecure development name is not accepted in secure mode
    assert httpx.get(secure_gw.base_url + "/api/me", cookies={"session": session_id}).status_code == 401
