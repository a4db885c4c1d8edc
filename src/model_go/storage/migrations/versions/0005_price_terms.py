"""price terms, overruns and idempotency: cache-write, per-request and per-image prices, free models,
the operator's context/max-output overrides; per usage row the cache-write tokens, any overrun beyond
the reservation, and the keyed hashes of an Idempotency-Key and of the body it came with

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cache_write_per_1m", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("request_micros", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("image_micros", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("free", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("max_output_tokens", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("context_length", sa.Integer(), nullable=True))
    with op.batch_alter_table("usage_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cache_write_tokens", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("overrun_micros", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("idempotency_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("body_hash", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_usage_logs_idempotency", ["key_id", "idempotency_hash"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("usage_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_logs_idempotency")
        batch_op.drop_column("body_hash")
        batch_op.drop_column("idempotency_hash")
        batch_op.drop_column("overrun_micros")
        batch_op.drop_column("cache_write_tokens")
    with op.batch_alter_table("prices", schema=None) as batch_op:
        for name in ("context_length", "max_output_tokens", "free", "image_micros", "request_micros"):
            batch_op.drop_column(name)
        batch_op.drop_column("cache_write_per_1m")
