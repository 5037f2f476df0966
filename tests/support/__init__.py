"""What the tests share, in one place.

* ``payloads``: Shopify webhook bodies in the documented shapes (ids, ``COD``/``PREPAID``
  gateways, times at minute offsets with ``at``), and signed requests.
* ``deliveries``: ``Delivery`` (a topic and a body), storing deliveries in the inbox and applying
  them with the real worker; shop settings.
* ``api``: API keys, authenticated calls, problem documents, the usual orders and refunds as
  deliveries, ``send`` (store and apply, asserting every delivery was processed).
* ``twins``: one record as a REST webhook payload and as an Admin GraphQL object (backfill).
* ``shopify_fake``: a Shopify at the HTTP boundary (``httpx.MockTransport``) for the sync tests.
* ``shopify_standin``: a real HTTP server standing in for Shopify (token endpoints, Admin GraphQL
  checked against the schema, bulk JSONL) for the lifecycle tests.
* ``fifth_tier``: a pytest plugin that declares one more tier (``test_fifth_tier``).

Test modules mirror the code: ``tests/service/domain/test_tiers.py`` tests
``service/domain/tiers.py``, ``tests/service/api/test_orders.py`` the orders API, and so on.
"""
