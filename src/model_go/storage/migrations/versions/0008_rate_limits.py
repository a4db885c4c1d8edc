"""rate limits: tokens per minute and concurrent requests per key and per user, and tiers (a user's
default limits, by name; every user starts in "default")

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tiers",
        sa.Column("name", sa.String(length=32), primary_key=True),
        sa.Column("rpm_limit", sa.Integer(), nullable=True),
        sa.Column("tpm_limit", sa.Integer(), nullable=True),
        sa.Column("max_concurrency", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    # batch mode: SQLite adds the columns in place (no table copy, which the foreign keys forbid)
    with op.batch_alter_table("users", recreate="never") as batch:
        batch.add_column(sa.Column("tpm_limit", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_concurrency", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("tier", sa.String(length=32), nullable=False, server_default="default"))
    with op.batch_alter_table("api_keys", recreate="never") as batch:
        batch.add_column(sa.Column("tpm_limit", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_concurrency", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", recreate="never") as batch:
        batch.drop_column("max_concurrency")
        batch.drop_column("tpm_limit")
    with op.batch_alter_table("users", recreate="never") as batch:
        batch.drop_column("tier")
        batch.drop_column("max_concurrency")
        batch.drop_column("tpm_limit")
    op.drop_table("tiers")
