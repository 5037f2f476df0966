-- pgbench script for `make bench` (bench/intake_bench.py): the inbox row intake stores, inserted
-- the way intake inserts it (one statement in autocommit, ON CONFLICT on the webhook id,
-- RETURNING the new id). Every transaction gets a new webhook id (prefixed pgbench-); the body is the same signed
-- orders/create delivery (3 line items) for every row, passed as the variable :body (pgbench -D)
-- in hex, so no file holds the payload twice. :shop_id comes from -D as well.
INSERT INTO webhook_deliveries
    (webhook_id, event_id, topic, shop_id, shop_domain, api_version, triggered_at, received_at, body,
     status, attempts, next_attempt_at)
VALUES ('pgbench-' || gen_random_uuid()::text, gen_random_uuid()::text, 'orders/create', :shop_id,
        'bench-shop.myshopify.com', '2026-04', now(), now(), decode(:body, 'hex'), 'pending', 0, now())
ON CONFLICT (webhook_id) DO NOTHING
RETURNING id;
