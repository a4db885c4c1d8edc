"""An API key works the moment it is created, on /v1 and /api, before the server's snapshot has
reloaded; a revoked key is refused at once on /api and within a second on /v1."""

from __future__ import annotations

import time

import httpx

from tests.api.conftest import signup
from tests.support.gateway import Gateway
from tests.support.smtp import MailBox


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_new_key_works_at_once_and_a_revoked_one_stops(api_gw: Gateway, mailbox: MailBox) -> None:
    api = signup(api_gw, mailbox)
    created = api.post("/api/keys", {"name": "fresh"})
    assert created.status_code == 201, created.text
    key, key_id = created.json()["secret"], created.json()["id"]
    # no wait: the snapshot may not know the key yet, the authenticator then asks the database
    models = httpx.get(api_gw.base_url + "/v1/models", headers=_bearer(key))
    assert models.status_code == 200, models.text
    assert httpx.get(api_gw.base_url + "/api/keys", headers=_bearer(key)).status_code == 200

    assert api.call("DELETE", f"/api/keys/{key_id}").status_code in (200, 204)
    refused = httpx.get(api_gw.base_url + "/api/keys", headers=_bearer(key))
    assert refused.status_code == 401  # /api reads the key's row: at once
    revoked_at = time.monotonic()
    while httpx.get(api_gw.base_url + "/v1/models", headers=_bearer(key)).status_code != 401:
        assert time.monotonic() - revoked_at < 1.0, "a revoked key still worked on /v1 after 1 s"
        time.sleep(0.05)


def test_an_unknown_key_is_refused_on_both(api_gw: Gateway) -> None:
    for path in ("/v1/models", "/api/keys"):
        resp = httpx.get(api_gw.base_url + path, headers=_bearer("sk-mg-not-a-key"))
        assert resp.status_code == 401 and resp.json()["error"]["message"] == "Incorrect API key provided."
