"""Every /api answer carries Cache-Control: no-store (the CSRF token, balances and keys are personal)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import make_gateway
from tests.support.gateway import Gateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = make_gateway(tmp_path_factory.mktemp("nostore"), "sqlite", MODELGO_DEMO="false").start()
    yield gateway
    gateway.stop()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/me", 401),
        ("POST", "/api/auth/login", 401),
        ("GET", "/api/no-such-route", 404),
        ("DELETE", "/api/auth/login", 405),
    ],
)
def test_api_answers_are_never_stored(gw: Gateway, method: str, path: str, status: int) -> None:
    body = {"login": "nobody", "password": "not the password"} if method == "POST" else None
    resp = httpx.request(method, gw.base_url + path, json=body, timeout=30)
    assert resp.status_code == status
    assert resp.headers.get_list("cache-control") == ["no-store"]
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


def test_a_refused_body_on_api_is_not_stored_either(gw: Gateway) -> None:
    resp = httpx.post(gw.base_url + "/api/auth/login", content=b"x" * (2 * 1024 * 1024), timeout=30)
    assert resp.status_code == 413
    assert resp.headers["cache-control"] == "no-store"
