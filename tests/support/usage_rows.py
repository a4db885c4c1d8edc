"""A usage row as a test writes it to the database itself (spend made before a server looked, rows
old enough to purge): the columns a row must name; the table's defaults fill the rest."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def usage_row(
    user_id: int,
    request_id: str,
    created_at: datetime,
    *,
    key_id: int | None = None,
    cost_micros: int = 0,
    model: str = "gpt-mock",
) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "user_id": user_id,
        "key_id": key_id,
        "endpoint": "chat",
        "model": model,
        "stream": False,
        "cost_micros": cost_micros,
        "status_code": 200,
        "created_at": created_at,
    }
