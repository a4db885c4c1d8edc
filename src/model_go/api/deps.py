"""Dependencies of the /api routes: the app state, and who is calling (session cookie or API key).

A session-authenticated POST/PATCH/PUT/DELETE must carry X-CSRF-Token; API keys need none (a
browser never sends them on its own). Admin routes want an admin user behind either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from sqlalchemy import Row

from model_go.accounts import sessions
from model_go.accounts.runtime import AccountsRuntime
from model_go.errors import AuthenticationFailed, PermissionDenied
from model_go.services import keys
from model_go.state import AppState
from model_go.wire.client_ip import TrustedProxies

# Ids in paths and queries: a number the database can hold, or a 400 naming the parameter.
MAX_DB_INT = 2**63 - 1
PathId = Annotated[int, Path(ge=1, le=MAX_DB_INT)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_DB_INT)]

UNSAFE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


def get_state(request: Request) -> AppState:
    state: AppState | None = getattr(request.app.state, "model_go", None)
    if state is None or state.accounts is None:
        raise AuthenticationFailed("The server is starting; try again in a moment.", code="starting")
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_runtime(state: StateDep) -> AccountsRuntime:
    assert state.accounts is not None
    return state.accounts


RuntimeDep = Annotated[AccountsRuntime, Depends(get_runtime)]


@dataclass(frozen=True)
class Principal:
    user: Row[Any]
    session_id: str | None = None  # set when signed in with the session cookie
    key: Row[Any] | None = None  # set when calling with an API key

    @property
    def id(self) -> int:
        return int(self.user.id)


def client_ip(request: Request) -> str:
    """The socket peer, or the client a trusted proxy names (wire/client_ip.py): per-address limits."""
    state: AppState | None = getattr(request.app.state, "model_go", None)
    proxies = state.proxies if state is not None else TrustedProxies()
    return proxies.of_scope(request.scope) or "unknown"


def session_cookie(request: Request, rt: AccountsRuntime) -> str | None:
    return request.cookies.get(rt.cookies.name)


async def _by_key(state: AppState, raw_key: str) -> Principal:
    # the relay's rule (relay/auth.py); the rows are read again because the routes want them, and
    # with them a revocation or a disabled account counts at once, before the snapshot reloads
    info = await state.authenticator.authenticate(state.snapshot, raw_key)
    async with state.engine.connect() as conn:
        key, user = await keys.of_bearer(conn, info.id, info.user_id)
    if key is None or user is None or user.deleted_at is not None:
        raise AuthenticationFailed("Incorrect API key provided.")
    if user.disabled:
        raise AuthenticationFailed("This account is disabled.", code="account_disabled")
    return Principal(user=user, key=key)


async def current_principal(request: Request, state: StateDep, rt: RuntimeDep) -> Principal:
    auth = request.headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return await _by_key(state, auth[7:].strip())
    session_id = session_cookie(request, rt)
    if not session_id:
        raise AuthenticationFailed("Please sign in.", code="not_authenticated")
    async with state.engine.connect() as conn:
        user = await sessions.user_for(conn, session_id)
    if user is None:
        raise AuthenticationFailed("Your session has ended. Please sign in again.", code="session_expired")
    if request.method in UNSAFE_METHODS and not rt.csrf.check(
        session_id, request.headers.get("x-csrf-token")
    ):
        raise PermissionDenied(
            "Missing or wrong X-CSRF-Token header (it is the csrf_token of GET /api/me).", code="csrf_failed"
        )
    return Principal(user=user, session_id=session_id)


CurrentUser = Annotated[Principal, Depends(current_principal)]


async def admin_principal(principal: CurrentUser) -> Principal:
    if not principal.user.is_admin:
        raise PermissionDenied("This needs an administrator account.", code="admin_required")
    return principal


AdminUser = Annotated[Principal, Depends(admin_principal)]
