"""initial schema

Revision ID: 99c48915cffd
Revises: 
Create Date: 2026-11-25 15:11:02.518835
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import service.types
from sqlalchemy.dialects import postgresql

revision: str = '99c48915cffd'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('compliance_requests',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger(), nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.Column('webhook_id', sa.String(length=255), nullable=False),
    sa.Column('shopify_request_id', sa.BigInteger(), nullable=True),
    sa.Column('customer_id', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('received_at', service.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('result', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_compliance_requests'))
    )
    with op.batch_alter_table('compliance_requests', schema=None) as batch_op:
        batch_op.create_index('ix_compliance_requests_shop', ['shop_id', 'id'], unique=False)

    op.create_table('customer_stats',
    sa.Column('shop_id', sa.BigInteger(), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('ltv', service.types.Money(precision=20, scale=4), nullable=False),
    sa.Column('order_count', sa.Integer(), nullable=False),
    sa.Column('rto_count', sa.Integer(), nullable=False),
    sa.Column('last_order_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('tier_of_record', sa.String(length=16), nullable=True),
    sa.PrimaryKeyConstraint('shop_id', 'customer_id', name=op.f('pk_customer_stats'))
    )
    with op.batch_alter_table('customer_stats', schema=None) as batch_op:
        batch_op.create_index('ix_customer_stats_shop_last_order', ['shop_id', 'last_order_at', 'customer_id'], unique=False)
        batch_op.create_index('ix_customer_stats_shop_ltv', ['shop_id', 'ltv', 'customer_id'], unique=False)
        batch_op.create_index('ix_customer_stats_shop_order_count', ['shop_id', 'order_count', 'customer_id'], unique=False)

    op.create_table('fulfillment_events',
    sa.Column('shop_id', sa.BigInteger(), nullable=False),
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('fulfillment_id', sa.BigInteger(), nullable=False),
    sa.Column('order_id', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('happened_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('shop_id', 'id', name=op.f('pk_fulfillment_events'))
    )
    with op.batch_alter_table('fulfillment_events', schema=None) as batch_op:
        batch_op.create_index('ix_fulfillment_events_shop_order', ['shop_id', 'order_id'], unique=False)

    op.create_table('fulfillments',
    sa.Column('shop_id', sa.BigInteger(), nullable=False),
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('order_id', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(), nullable=True),
    sa.Column('shipment_status', sa.String(), nullable=True),
    sa.Column('tracking_company', sa.String(), nullable=True),
    sa.Column('tracking_number', sa.String(), nullable=True),
    sa.Column('created_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('shop_id', 'id', name=op.f('pk_fulfillments'))
    )
    with op.batch_alter_table('fulfillments', schema=None) as batch_op:
        batch_op.create_index('ix_fulfillments_shop_order', ['shop_id', 'order_id'], unique=False)

    op.create_table('order_lines',
    sa.Column('shop_id', sa.BigInteger(), nullable=False),
    sa.Column('order_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('product_id', sa.BigInteger(), nullable=True),
    sa.Column('variant_id', sa.BigInteger(), nullable=True),
    sa.Column('title', sa.Text(), nullable=True),
    sa.Column('variant_title', sa.Text(), nullable=True),
    sa.Column('vendor', sa.String(), nullable=True),
    sa.Column('sku', sa.String(), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('price', service.types.Money(precision=20, scale=4), nullable=False),
    sa.PrimaryKeyConstraint('shop_id', 'order_id', 'id', name=op.f('pk_order_lines'))
    )
    op.create_table('refunds',
    sa.Column('shop_id', sa.BigInteger(), nullable=False),
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('order_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', service.types.Money(precision=20, scale=4), nullable=False),
    sa.Column('returned_quantity', sa.Integer(), nullable=False),
    sa.Column('created_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('shop_id', 'id', name=op.f('pk_refunds'))
    )
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.create_index('ix_refunds_shop_order', ['shop_id', 'order_id'], unique=False)

    op.create_table('returns',
    sa.Column('shop_id', sa.BigInteger(), nullable=False),
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('order_id', sa.BigInteger(), nullable=True),
    sa.Column('name', sa.String(), nullable=True),
    sa.Column('requested_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('approved_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('declined_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('shop_id', 'id', name=op.f('pk_returns'))
    )
    with op.batch_alter_table('returns', schema=None) as batch_op:
        batch_op.create_index('ix_returns_shop_order', ['shop_id', 'order_id'], unique=False)

    op.create_table('shops',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('shopify_id', sa.BigInteger(), nullable=True),
    sa.Column('name', sa.String(), nullable=True),
    sa.Column('currency', sa.String(length=8), nullable=True),
    sa.Column('iana_timezone', sa.String(length=64), nullable=True),
    sa.Column('settings', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', service.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('installed_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('uninstalled_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('access_token_enc', sa.Text(), nullable=True),
    sa.Column('refresh_token_enc', sa.Text(), nullable=True),
    sa.Column('token_expires_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('refresh_token_expires_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('scopes', sa.Text(), nullable=True),
    sa.Column('sync_state', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('last_synced_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shops')),
    sa.UniqueConstraint('domain', name=op.f('uq_shops_domain'))
    )
    op.create_table('tier_changes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger(), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('from_tier', sa.String(length=16), nullable=True),
    sa.Column('to_tier', sa.String(length=16), nullable=False),
    sa.Column('ltv', service.types.Money(precision=20, scale=4), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('order_id', sa.BigInteger(), nullable=True),
    sa.Column('at', service.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tier_changes'))
    )
    with op.batch_alter_table('tier_changes', schema=None) as batch_op:
        batch_op.create_index('ix_tier_changes_shop_customer', ['shop_id', 'customer_id', 'id'], unique=False)

    op.create_table('tombstones',
    sa.Column('shop_id', sa.BigInteger(), nullable=False),
    sa.Column('resource', sa.String(length=32), nullable=False),
    sa.Column('resource_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('deleted_at', service.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('shop_id', 'resource', 'resource_id', name=op.f('pk_tombstones'))
    )
    op.create_table('api_keys',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shop_id', sa.BigInteger(), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', service.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_api_keys_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_shop_id'), ['shop_id'], unique=False)

    op.create_table('customers',
    sa.Column('shop_id', sa.BigInteger(), nullable=False),
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('email', sa.String(), nullable=True),
    sa.Column('phone', sa.String(), nullable=True),
    sa.Column('first_name', sa.String(), nullable=True),
    sa.Column('last_name', sa.String(), nullable=True),
    sa.Column('state', sa.String(), nullable=True),
    sa.Column('default_address', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('addresses', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('version_rank', sa.SmallInteger(), nullable=False),
    sa.Column('version_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_customers_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('shop_id', 'id', name=op.f('pk_customers'))
    )
    # The customers list's name sort key (service.models.CUSTOMER_NAME_KEY_SQL), an expression index.
    op.create_index('ix_customers_shop_name', 'customers', ['shop_id', sa.text("nullif(ltrim(rtrim(lower((coalesce(first_name, '') || ' ') || coalesce(last_name, '')))), '')"), 'id'], unique=False)
    op.create_table('orders',
    sa.Column('shop_id', sa.BigInteger(), nullable=False),
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('name', sa.String(), nullable=True),
    sa.Column('customer_id', sa.BigInteger(), nullable=True),
    sa.Column('email', sa.String(), nullable=True),
    sa.Column('phone', sa.String(), nullable=True),
    sa.Column('created_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('processed_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('financial_status', sa.String(), nullable=True),
    sa.Column('fulfillment_status', sa.String(), nullable=True),
    sa.Column('currency', sa.String(), nullable=True),
    sa.Column('total_amount', service.types.Money(precision=20, scale=4), nullable=False),
    sa.Column('original_total', service.types.Money(precision=20, scale=4), nullable=False),
    sa.Column('payment_method', sa.String(), nullable=False),
    sa.Column('payment_gateway_names', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('gateway_key', sa.Text(), server_default='||', nullable=False),
    sa.Column('tracking_status', sa.String(), nullable=True),
    sa.Column('delivered_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('rto_source', sa.String(), nullable=True),
    sa.Column('tags', sa.Text(), nullable=False),
    sa.Column('rto_tag_log', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('manual_status', sa.String(), nullable=True),
    sa.Column('manual_status_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('manual_rto_status', sa.String(), nullable=True),
    sa.Column('manual_rto_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('test', sa.Boolean(), nullable=False),
    sa.Column('shipping_address', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('billing_address', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_orders_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('shop_id', 'id', name=op.f('pk_orders'))
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_shop_created', ['shop_id', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_orders_shop_customer', ['shop_id', 'customer_id', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_orders_shop_tracking', ['shop_id', 'tracking_status', 'created_at', 'id'], unique=False)

    op.create_table('webhook_deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('webhook_id', sa.String(length=255), nullable=False),
    sa.Column('event_id', sa.String(), nullable=True),
    sa.Column('topic', sa.String(length=255), nullable=False),
    sa.Column('shop_id', sa.BigInteger(), nullable=False),
    sa.Column('shop_domain', sa.String(length=255), nullable=False),
    sa.Column('api_version', sa.String(), nullable=True),
    sa.Column('triggered_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('received_at', service.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', service.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('processed_at', service.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_webhook_deliveries_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('webhook_id', name=op.f('uq_webhook_deliveries_webhook_id'))
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_deliveries_claim', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_webhook_deliveries_shop_status', ['shop_id', 'status', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_deliveries_shop_status')
        batch_op.drop_index('ix_webhook_deliveries_claim')

    op.drop_table('webhook_deliveries')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_shop_tracking')
        batch_op.drop_index('ix_orders_shop_customer')
        batch_op.drop_index('ix_orders_shop_created')

    op.drop_table('orders')
    op.drop_index('ix_customers_shop_name', table_name='customers')
    op.drop_table('customers')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_shop_id'))

    op.drop_table('api_keys')
    op.drop_table('tombstones')
    with op.batch_alter_table('tier_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_tier_changes_shop_customer')

    op.drop_table('tier_changes')
    op.drop_table('shops')
    with op.batch_alter_table('returns', schema=None) as batch_op:
        batch_op.drop_index('ix_returns_shop_order')

    op.drop_table('returns')
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_index('ix_refunds_shop_order')

    op.drop_table('refunds')
    op.drop_table('order_lines')
    with op.batch_alter_table('fulfillments', schema=None) as batch_op:
        batch_op.drop_index('ix_fulfillments_shop_order')

    op.drop_table('fulfillments')
    with op.batch_alter_table('fulfillment_events', schema=None) as batch_op:
        batch_op.drop_index('ix_fulfillment_events_shop_order')

    op.drop_table('fulfillment_events')
    with op.batch_alter_table('customer_stats', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_stats_shop_order_count')
        batch_op.drop_index('ix_customer_stats_shop_ltv')
        batch_op.drop_index('ix_customer_stats_shop_last_order')

    op.drop_table('customer_stats')
    with op.batch_alter_table('compliance_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_compliance_requests_shop')

    op.drop_table('compliance_requests')
