"""Database tables, engine set-up, repositories and migrations."""

# The accounts and billing tables live in their own module on the same metadata; importing them here registers
# them whenever any storage module is used (Alembic and create_all see every table).
from model_go.storage import account_tables as _account_tables  # noqa: F401
from model_go.storage import billing_tables as _billing_tables  # noqa: F401
