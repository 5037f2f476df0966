"""oauth state uses: each OAuth state nonce is accepted once

Revision ID: c11713cf857f
Revises: 5d1f0c7a9b2e
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import service.types

revision: str = 'c11713cf857f'
down_revision: str | None = "5d1f0c7a9b2e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('oauth_state_uses',
    sa.Column('nonce_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', service.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('nonce_hash', name=op.f('pk_oauth_state_uses'))
    )
    with op.batch_alter_table('oauth_state_uses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_state_uses_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('oauth_state_uses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_state_uses_expires_at'))

    op.drop_table('oauth_state_uses')
