"""/api/keys: the user's API keys. The secret is shown once, at creation; only its hash is stored."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Response, status

from model_go.api.deps import CurrentUser, PathId, StateDep
from model_go.api.schemas import KeyBudgetIn, KeyIn, KeyOut, LimitsIn, NewKeyOut
from model_go.services import keys
from model_go.services.limits import COLUMNS, LimitChange

router = APIRouter(prefix="/api/keys", tags=["keys"])


@router.get("", response_model=list[KeyOut])
async def list_keys(principal: CurrentUser, state: StateDep) -> list[dict[str, Any]]:
    """Every key of the user (prefixes only), revoked ones included."""
    async with state.engine.connect() as conn:
        return [dataclasses.asdict(key) for key in await keys.list_for(conn, principal.id)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=NewKeyOut)
async def create_key(body: KeyIn, principal: CurrentUser, state: StateDep) -> dict[str, Any]:
    """Create a key, optionally limited to some models and with an expiry. The secret appears only here.
    A request made with an API key cannot create a key with more rights than that key."""
    async with state.engine.begin() as conn:
        new = await keys.create(
            conn,
            state.keyring,
            principal.id,
            name=body.name,
            models=body.models,
            expires_at=body.expires_at,
            creator=principal.key,
            budgets=budget_change(body, body.model_fields_set),
            limits=limit_change(body, body.model_fields_set),
        )
    return {**dataclasses.asdict(new.key), "secret": new.secret}


def limit_change(body: LimitsIn, sent: set[str]) -> LimitChange:
    """The limits the client sent (null: remove); those it left out stay as they are."""
    return LimitChange(**{name: getattr(body, name) for name in COLUMNS if name in sent})


def budget_change(body: KeyIn | KeyBudgetIn, sent: set[str]) -> keys.BudgetChange:
    """The budget fields the client sent (null: remove); those it left out stay as they are."""
    return keys.BudgetChange(
        **{
            name: getattr(body, name)
            for name in ("budget_usd", "budget_period", "lifetime_budget_usd")
            if name in sent
        }
    )


@router.patch("/{key_id}", response_model=KeyOut)
async def set_key_budgets(
    key_id: int, body: KeyBudgetIn, principal: CurrentUser, state: StateDep
) -> dict[str, Any]:
    """Set, change or remove a key's budgets (per day, week or month, and lifetime); the API applies
    them within a second. A request made with a key that has a budget cannot change budgets."""
    async with state.engine.begin() as conn:
        key = await keys.set_budgets(
            conn,
            key_id,
            budget_change(body, body.model_fields_set),
            owner_id=principal.id,
            creator=principal.key,
        )
    return dataclasses.asdict(key)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def revoke_key(key_id: PathId, principal: CurrentUser, state: StateDep) -> Response:
    """Revoke a key; the API refuses it within a second. Another user's key is simply not found."""
    async with state.engine.begin() as conn:
        await keys.revoke(conn, key_id, owner_id=principal.id)
    return Response(status_code=204)
