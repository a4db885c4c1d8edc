"""payments: ledger kinds with a unique reference and the admin; Stripe orders, events, refunds; codes

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _ledger_up() -> None:
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reference", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("admin_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_ledger_admin_id_users"), "users", ["admin_id"], ["id"], ondelete="SET NULL"
        )
        batch_op.create_unique_constraint(batch_op.f("uq_ledger_kind_reference"), ["kind", "reference"])
    # the old kinds, renamed (billing/kinds.py); every existing row gets its reference
    op.execute("UPDATE ledger SET kind = 'usage', reference = request_id WHERE kind = 'debit'")
    op.execute(
        "UPDATE ledger SET kind = 'adjustment', reference = 'legacy:' || CAST(id AS VARCHAR(20))"
        " WHERE kind IN ('credit', 'adjust')"
    )


def _orders_up() -> None:
    op.create_table(
        "payment_orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stripe_session_id", sa.String(length=255), nullable=True),
        sa.Column("payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("refunded_micros", sa.BigInteger(), nullable=False),
        sa.Column("problem", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_payment_orders_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_orders")),
        sa.UniqueConstraint("stripe_session_id", name=op.f("uq_payment_orders_stripe_session_id")),
        sa.UniqueConstraint("payment_intent_id", name=op.f("uq_payment_orders_payment_intent_id")),
    )
    with op.batch_alter_table("payment_orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payment_orders_user_id"), ["user_id"], unique=False)
    op.create_table(
        "stripe_events",
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_stripe_events")),
    )
    op.create_table(
        "stripe_refunds",
        sa.Column("payment_intent_id", sa.String(length=255), nullable=False),
        sa.Column("charge_id", sa.String(length=255), nullable=False),
        sa.Column("amount_refunded_micros", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("payment_intent_id", name=op.f("pk_stripe_refunds")),
    )


def _codes_up() -> None:
    op.create_table(
        "code_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("uses_per_code", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(length=255), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_code_batches_created_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_code_batches")),
    )
    op.create_table(
        "redemption_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["code_batches.id"],
            name=op.f("fk_redemption_codes_batch_id_code_batches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemption_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_redemption_codes_code_hash")),
    )
    with op.batch_alter_table("redemption_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_redemption_codes_batch_id"), ["batch_id"], unique=False)


def upgrade() -> None:
    _ledger_up()
    _orders_up()
    _codes_up()


def downgrade() -> None:
    with op.batch_alter_table("redemption_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_redemption_codes_batch_id"))
    op.drop_table("redemption_codes")
    op.drop_table("code_batches")
    op.drop_table("stripe_refunds")
    op.drop_table("stripe_events")
    with op.batch_alter_table("payment_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_orders_user_id"))
    op.drop_table("payment_orders")
    op.execute("UPDATE ledger SET kind = 'debit' WHERE kind = 'usage'")
    op.execute("UPDATE ledger SET kind = 'adjust' WHERE kind <> 'debit'")
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_ledger_kind_reference"), type_="unique")
        batch_op.drop_constraint(batch_op.f("fk_ledger_admin_id_users"), type_="foreignkey")
        batch_op.drop_column("admin_id")
        batch_op.drop_column("reference")
