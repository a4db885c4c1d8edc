"""/api/keys: the user's API keys. The secret is shown once, at creation; only its hash is stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Response, status
from sqlalchemy import func, select

from model_go.accounts.export import key_view
from model_go.api.deps import CurrentUser, Principal, StateDep
from model_go.api.schemas import KeyIn, KeyOut, NewKeyOut
from model_go.errors import InvalidRequest, NotFound, PermissionDenied
from model_go.storage import repo
from model_go.storage.tables import api_keys

router = APIRouter(prefix="/api/keys", tags=["keys"])
MAX_ACTIVE_KEYS = 100


@router.get("", response_model=list[KeyOut])
async def list_keys(principal: CurrentUser, state: StateDep) -> list[dict[str, Any]]:
    """Every key of the user (prefixes only), revoked ones included."""
    async with state.engine.connect() as conn:
        return [key_view(row) for row in await repo.list_keys(conn, principal.id)]


def _check_no_escalation(principal: Principal, models: list[str] | None, expires_at: datetime | None) -> None:
    """A key may create keys, but never one with more rights than itself."""
    key = principal.key
    if key is None:
        return
    if key.models is not None:
        allowed = set(orjson.loads(key.models))
        if models is None or not set(models) <= allowed:
            raise PermissionDenied(
                "This API key is restricted to some models; it cannot create a key for other models.",
                param="models",
                code="key_rights_exceeded",
            )
    if key.expires_at is not None and (expires_at is None or expires_at > key.expires_at):
        raise PermissionDenied(
            "This API key expires; it cannot create a key that lives longer.",
            param="expires_at",
            code="key_rights_exceeded",
        )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=NewKeyOut)
async def create_key(body: KeyIn, principal: CurrentUser, state: StateDep) -> dict[str, Any]:
    """Create a key, optionally limited to some models and with an expiry. The secret appears only here."""
    expires_at = body.expires_at
    if expires_at is not None:
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        if expires_at <= datetime.now(UTC):
            raise InvalidRequest(
                "expires_at must be in the future.", param="expires_at", code="invalid_value"
            )
    models = None
    if body.models is not None:
        try:
            models = repo.validate_models(body.models)
        except repo.RepoError as exc:
            raise InvalidRequest(str(exc), param="models", code="invalid_value") from None
    _check_no_escalation(principal, models, expires_at)
    async with state.engine.begin() as conn:
        active = await conn.scalar(
            select(func.count())
            .select_from(api_keys)
            .where(api_keys.c.user_id == principal.id, api_keys.c.revoked_at.is_(None))
        )
        if int(active or 0) >= MAX_ACTIVE_KEYS:
            raise InvalidRequest(
                f"At most {MAX_ACTIVE_KEYS} active keys; revoke one first.", code="too_many_keys"
            )
        new = await repo.create_key(
            conn, state.keyring, principal.id, name=body.name.strip(), models=models, expires_at=expires_at
        )
        row = (await conn.execute(select(api_keys).where(api_keys.c.id == new.id))).one()
    return {**key_view(row), "secret": new.secret}


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def revoke_key(key_id: int, principal: CurrentUser, state: StateDep) -> Response:
    """Revoke a key; the API refuses it within a second. Another user's key is simply not found."""
    async with state.engine.begin() as conn:
        owned = await conn.scalar(
            select(api_keys.c.id).where(api_keys.c.id == key_id, api_keys.c.user_id == principal.id)
        )
        if owned is None:
            raise NotFound("No such API key.", param="id", code="key_not_found")
        await repo.revoke_key(conn, key_id, user_id=principal.id)
    return Response(status_code=204)
