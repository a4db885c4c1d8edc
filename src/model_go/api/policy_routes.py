"""/api/policy: the current privacy policy, its version history, and accepting it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from model_go.accounts import policy
from model_go.api.deps import CurrentUser, StateDep
from model_go.api.schemas import MessageOut, PolicyAcceptIn, PolicyOut
from model_go.errors import InvalidRequest

router = APIRouter(prefix="/api/policy", tags=["policy"])


@router.get("", response_model=PolicyOut)
async def get_policy(state: StateDep) -> dict[str, Any]:
    """Public: the policy in force and every published version."""
    async with state.engine.connect() as conn:
        current = await policy.current(conn)
        versions = await policy.history(conn)
    return {
        "current": {
            "version": current.version,
            "effective_date": current.effective_date,
            "text": current.text,
        },
        "versions": [
            {"version": v.version, "effective_date": v.effective_date, "published_at": v.published_at}
            for v in versions
        ],
    }


@router.post("/accept", response_model=MessageOut)
async def accept_policy(body: PolicyAcceptIn, principal: CurrentUser, state: StateDep) -> dict[str, str]:
    """Accept the current version (what policy_update_required asks for)."""
    async with state.engine.begin() as conn:
        current = await policy.current_version(conn)
        if body.version != current:
            raise InvalidRequest(
                f"Only the current version ({current}) can be accepted.",
                param="version",
                code="policy_version_mismatch",
            )
        await policy.accept(conn, principal.id, current)
    return {"message": f"Privacy policy version {current} accepted."}
