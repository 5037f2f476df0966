"""shop jobs (backfill and reconciliation) and the embedded token exchange

Revision ID: a15c0b4e7d21
Revises: b7e2d41c9a03
Create Date: 2026-12-03 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import service.types

revision: str = "a15c0b4e7d21"
down_revision: str | None = "b7e2d41c9a03"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = "state IN ('queued', 'running')"


def upgrade() -> None:
    op.create_table(
        "shop_jobs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_run_at", service.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", service.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", service.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", service.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", service.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_shop_jobs_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shop_jobs")),
    )
    with op.batch_alter_table("shop_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_shop_jobs_due", ["state", "next_run_at"], unique=False)
        batch_op.create_index("ix_shop_jobs_shop", ["shop_id", "kind", "id"], unique=False)
        batch_op.create_index(
            "uq_shop_jobs_active",
            ["shop_id"],
            unique=True,
            sqlite_where=sa.text(ACTIVE),
            postgresql_where=sa.text(ACTIVE),
        )
    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("token_exchange_until", service.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("token_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("token_error_at", service.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.drop_column("token_error_at")
        batch_op.drop_column("token_error")
        batch_op.drop_column("token_exchange_until")
    with op.batch_alter_table("shop_jobs", schema=None) as batch_op:
        batch_op.drop_index("uq_shop_jobs_active", sqlite_where=sa.text(ACTIVE), postgresql_where=sa.text(ACTIVE))
        batch_op.drop_index("ix_shop_jobs_shop")
        batch_op.drop_index("ix_shop_jobs_due")
    op.drop_table("shop_jobs")
