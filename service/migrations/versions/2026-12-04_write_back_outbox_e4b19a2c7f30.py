"""write-back: the outbox and per-shop cost bucket and setup

Revision ID: e4b19a2c7f30
Revises: c11713cf857f
Create Date: 2026-12-04 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import service.types

revision: str = "e4b19a2c7f30"
down_revision: str | None = "c11713cf857f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "write_back_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("resource_id", sa.BigInteger(), nullable=False),
        sa.Column("desired", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", service.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", service.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("queued_at", service.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("written", sa.Text(), nullable=True),
        sa.Column("last_written_at", service.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_write_back_outbox_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_write_back_outbox")),
        sa.UniqueConstraint(
            "shop_id", "kind", "resource_id", name=op.f("uq_write_back_outbox_shop_id_kind_resource_id")
        ),
    )
    with op.batch_alter_table("write_back_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_write_back_outbox_due", ["state", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_write_back_outbox_shop_state", ["shop_id", "state"], unique=False)
    op.create_table(
        "write_back_shops",
        sa.Column("shop_id", sa.BigInteger(), nullable=False),
        sa.Column("bucket_available", sa.Float(), nullable=False),
        sa.Column("bucket_maximum", sa.Float(), nullable=False),
        sa.Column("bucket_restore_rate", sa.Float(), nullable=False),
        sa.Column("bucket_at", service.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("setup", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
        sa.Column("setup_at", service.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("setup_next_at", service.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("setup_error", sa.Text(), nullable=True),
        sa.Column("last_written_at", service.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_write_back_shops_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("shop_id", name=op.f("pk_write_back_shops")),
    )


def downgrade() -> None:
    op.drop_table("write_back_shops")
    with op.batch_alter_table("write_back_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_write_back_outbox_shop_state")
        batch_op.drop_index("ix_write_back_outbox_due")
    op.drop_table("write_back_outbox")
