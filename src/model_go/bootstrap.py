"""First start: a demo user, the built-in demo model and a key, so the README works at once."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.security import KeyRing
from model_go.storage import repo

DEMO_CREDIT_MICROS = 5_000_000
DEMO_MODEL = "demo"


async def ensure_demo(conn: AsyncConnection, keyring: KeyRing) -> str | None:
    """On an empty database create the demo set-up and return its key; otherwise do nothing."""
    if await repo.user_count(conn):
        return None
    user_id = await repo.create_user(conn, "demo", email=None)
    await repo.add_credit(conn, user_id, DEMO_CREDIT_MICROS, note="demo credit on first start")
    await repo.set_price(
        conn,
        DEMO_MODEL,
        input_per_1m=1_000_000,
        output_per_1m=2_000_000,
        cached_input_per_1m=500_000,
    )
    await repo.add_channel(conn, keyring, name="demo", provider="mock", base_url="", models=[DEMO_MODEL])
    key = await repo.create_key(conn, keyring, user_id, name="demo")
    return key.secret
