"""key budgets: a per-period and a lifetime spend limit per API key; a low-balance threshold per user

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("budget_micros", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("budget_period", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("lifetime_budget_micros", sa.BigInteger(), nullable=True))
        # the spend of usage rows the retention purge removed: the lifetime spend is this plus the
        # costs of the rows still kept
        batch_op.add_column(
            sa.Column("purged_spend_micros", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("usage_logs", schema=None) as batch_op:
        batch_op.create_index("ix_usage_logs_key_created", ["key_id", "created_at"], unique=False)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("low_balance_micros", sa.BigInteger(), nullable=True))
        # armed: the balance was at or above the threshold since the last low-balance mail. A plain
        # literal default: an expression would make SQLite's batch mode copy and drop `users`.
        batch_op.add_column(sa.Column("low_balance_armed", sa.Boolean(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("low_balance_mailed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+ and PostgreSQL), not batch mode: on SQLite a batch
    # drop copies and drops the table, and dropping `users` with foreign keys on would cascade to every
    # key, ledger entry and usage row.
    op.drop_index("ix_usage_logs_key_created", table_name="usage_logs")
    for column in ("low_balance_mailed_at", "low_balance_armed", "low_balance_micros"):
        op.execute(f"ALTER TABLE users DROP COLUMN {column}")
    for column in ("purged_spend_micros", "lifetime_budget_micros", "budget_period", "budget_micros"):
        op.execute(f"ALTER TABLE api_keys DROP COLUMN {column}")
