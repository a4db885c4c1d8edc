"""money guards in the database: a balance or a ledger amount outside ±2^62 micro-dollars, or stored as
anything but an integer, is refused by the database itself (CHECK constraints on PostgreSQL; triggers
on SQLite, where adding a CHECK would mean copying the users table, which its foreign keys forbid)

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

LIMIT = 2**62
_GUARDS = (
    ("users", "balance_micros", "UPDATE OF balance_micros", "update"),
    ("users", "balance_micros", "INSERT", "insert"),
    ("ledger", "amount_micros", "INSERT", "insert"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table, column, event, name in _GUARDS:
            op.execute(
                f"CREATE TRIGGER guard_{table}_{column}_{name} BEFORE {event} ON {table}"
                f" WHEN typeof(NEW.{column}) != 'integer'"
                f" OR NEW.{column} > {LIMIT} OR NEW.{column} < -{LIMIT}"
                f" BEGIN SELECT RAISE(ABORT, '{table}.{column} out of range'); END"
            )
        return
    op.create_check_constraint(
        "ck_users_balance_range", "users", f"balance_micros BETWEEN -{LIMIT} AND {LIMIT}"
    )
    op.create_check_constraint(
        "ck_ledger_amount_range", "ledger", f"amount_micros BETWEEN -{LIMIT} AND {LIMIT}"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table, column, _event, name in _GUARDS:
            op.execute(f"DROP TRIGGER IF EXISTS guard_{table}_{column}_{name}")
        return
    op.drop_constraint("ck_ledger_amount_range", "ledger", type_="check")
    op.drop_constraint("ck_users_balance_range", "users", type_="check")
