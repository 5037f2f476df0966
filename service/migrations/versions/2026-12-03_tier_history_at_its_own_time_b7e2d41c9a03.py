"""tier history at its own time: order status timelines, API status log, shop tier evaluations

Revision ID: b7e2d41c9a03
Revises: 99c48915cffd
Create Date: 2026-12-03 13:30:00.000000

Expand only: new columns and a new table; nothing the previous release reads is changed.
The manual log starts from what the previous columns kept (the latest forward status and the
first RTO status set through the API). Status logs are filled as orders are next re-derived.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import service.types
from sqlalchemy.dialects import postgresql

revision: str = 'b7e2d41c9a03'
down_revision: str | None = '99c48915cffd'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('tier_evaluations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger(), nullable=False),
    sa.Column('at', service.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('rules', JSON, nullable=False),
    sa.Column('previous', JSON, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tier_evaluations'))
    )
    with op.batch_alter_table('tier_evaluations', schema=None) as batch_op:
        batch_op.create_index('ix_tier_evaluations_shop_at', ['shop_id', 'at', 'id'], unique=False)

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('manual_log', JSON, nullable=True))
        batch_op.add_column(sa.Column('status_log', JSON, nullable=True))
        batch_op.add_column(sa.Column('last_status_at', service.types.UTCDateTime(timezone=True), nullable=True))

    orders = sa.table(
        'orders',
        sa.column('shop_id', sa.BigInteger()),
        sa.column('id', sa.BigInteger()),
        sa.column('manual_status', sa.String()),
        sa.column('manual_status_at', service.types.UTCDateTime(timezone=True)),
        sa.column('manual_rto_status', sa.String()),
        sa.column('manual_rto_at', service.types.UTCDateTime(timezone=True)),
        sa.column('manual_log', JSON),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            orders.c.shop_id, orders.c.id, orders.c.manual_status, orders.c.manual_status_at,
            orders.c.manual_rto_status, orders.c.manual_rto_at,
        ).where(sa.or_(orders.c.manual_status.is_not(None), orders.c.manual_rto_status.is_not(None)))
    ).all()
    for row in rows:
        log = [
            [when.strftime('%Y-%m-%dT%H:%M:%S.%fZ'), status]
            for when, status in ((row.manual_status_at, row.manual_status), (row.manual_rto_at, row.manual_rto_status))
            if when is not None and status is not None
        ]
        bind.execute(
            sa.update(orders)
            .where(orders.c.shop_id == row.shop_id, orders.c.id == row.id)
            .values(manual_log=sorted(log) or None)
        )


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('last_status_at')
        batch_op.drop_column('status_log')
        batch_op.drop_column('manual_log')
    with op.batch_alter_table('tier_evaluations', schema=None) as batch_op:
        batch_op.drop_index('ix_tier_evaluations_shop_at')
    op.drop_table('tier_evaluations')
