"""/api/tickets: support tickets of the signed-in user. Another user's ticket is simply not found."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from model_go.accounts import tickets
from model_go.api.deps import CurrentUser, PathId, RuntimeDep, StateDep
from model_go.api.schemas import MessageIn, Page, TicketIn

router = APIRouter(prefix="/api/tickets", tags=["support"])


@router.get("", response_model=Page[dict[str, Any]])
async def list_tickets(
    principal: CurrentUser,
    state: StateDep,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """The user's tickets, most recently active first."""
    async with state.engine.connect() as conn:
        items, total = await tickets.list_tickets(
            conn, user_id=principal.id, status=None, page=page, page_size=page_size
        )
    return {"items": items, "page": page, "page_size": page_size, "total": total}


@router.post("", status_code=status.HTTP_201_CREATED)
async def open_ticket(
    body: TicketIn, principal: CurrentUser, state: StateDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Open a ticket; the administrators are emailed."""
    async with state.engine.begin() as conn:
        ticket_id = await tickets.open_ticket(
            conn, rt.public_url, principal.user, body.subject.strip(), body.body
        )
        view = await tickets.with_messages(conn, await tickets.owned(conn, ticket_id, principal.id))
    rt.sender.wake()
    return view


@router.get("/{ticket_id}")
async def get_ticket(ticket_id: PathId, principal: CurrentUser, state: StateDep) -> dict[str, Any]:
    """One ticket with its messages."""
    async with state.engine.connect() as conn:
        return await tickets.with_messages(conn, await tickets.owned(conn, ticket_id, principal.id))


@router.post("/{ticket_id}/messages", status_code=status.HTTP_201_CREATED)
async def reply(
    ticket_id: PathId, body: MessageIn, principal: CurrentUser, state: StateDep
) -> dict[str, Any]:
    """Add a message to one of your tickets (reopens it)."""
    async with state.engine.begin() as conn:
        ticket = await tickets.owned(conn, ticket_id, principal.id)
        await tickets.add_message(conn, ticket.id, principal.id, body.body, from_staff=False)
        return await tickets.with_messages(conn, await tickets.owned(conn, ticket_id, principal.id))
