"""Admin GraphQL objects → snapshots (``service.domain.backfill``): pure, no database.

The strongest check: the same record as a webhook payload and as a GraphQL object gives equal
snapshots, so a backfilled record and a webhook-delivered one take the same path afterwards.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from service.domain import backfill
from service.domain.records import CustomerSnapshot, FulfillmentSnapshot, LineSnapshot, OrderSnapshot
from shopify_client import parse_bulk_jsonl
from tests.support import twins
from webhooks.handlers.customers import customer_snapshot as webhook_customer_snapshot
from webhooks.handlers.orders import order_snapshot as webhook_order_snapshot
from webhooks.payloads import CustomerPayload, OrderPayload


def grouped_order(twin: twins.Twin) -> dict[str, Any]:
    """An order as ``parse_bulk_jsonl`` nests it: line items under ``"LineItem"``."""
    lines = [{k: v for k, v in child.items() if k != "__parentId"} for child in twin.children]
    return {**twin.gql, "LineItem": lines} if lines else dict(twin.gql)


class TestSameAsWebhooks:
    @pytest.mark.parametrize("seed", range(5))
    def test_customers_map_like_their_webhook_payloads(self, seed: int) -> None:
        data = twins.dataset(customers=30, orders=0, seed=seed)
        for twin in data.customers:
            expected = webhook_customer_snapshot(CustomerPayload.model_validate(twin.rest))
            assert backfill.customer_snapshot(twin.gql) == expected

    @pytest.mark.parametrize("seed", range(5))
    def test_orders_map_like_their_webhook_payloads(self, seed: int) -> None:
        data = twins.dataset(customers=10, orders=60, seed=seed)
        for twin in data.orders:
            expected = webhook_order_snapshot(OrderPayload.model_validate(twin.rest))
            assert backfill.order_snapshot(grouped_order(twin)) == expected

    def test_a_bulk_jsonl_file_parses_into_the_same_orders(self) -> None:
        data = twins.dataset(customers=5, orders=80, seed=11)
        roots = parse_bulk_jsonl(data.orders_jsonl.decode().splitlines())
        assert [backfill.snapshot(root) for root in roots] == [
            webhook_order_snapshot(OrderPayload.model_validate(t.rest)) for t in data.orders
        ]


class TestIds:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("gid://shopify/Order/7390182734650012345", 7390182734650012345),
            ("gid://shopify/MailingAddress/42?model_name=CustomerAddress", 42),
            ("123", 123),
            (123, 123),
            (True, None),
            ("gid://shopify/Order/", None),
            ("gid://shopify/Order/abc", None),
            ("Order/12", None),
            (0, None),
            (-5, None),
            (2**63, None),
            (None, None),
            (12.0, None),
        ],
    )
    def test_gid_id(self, value: object, expected: int | None) -> None:
        assert backfill.gid_id(value) == expected

    def test_gid_type(self) -> None:
        assert backfill.gid_type("gid://shopify/LineItem/1") == "LineItem"
        assert (
            backfill.gid_type("gid://shopify/MailingAddress/1?model_name=CustomerAddress") == "MailingAddress"
        )
        assert backfill.gid_type("1") is None
        assert backfill.gid_type(None) is None

    def test_an_object_without_a_usable_id_is_refused(self) -> None:
        with pytest.raises(backfill.MappingError):
            backfill.order_snapshot({"id": "gid://shopify/Order/x"})
        with pytest.raises(backfill.MappingError):
            backfill.customer_snapshot({})
        with pytest.raises(backfill.MappingError):
            backfill.order_snapshot({"id": "gid://shopify/Order/1", "LineItem": [{"quantity": 1}]})


class TestEnums:
    @pytest.mark.parametrize(
        ("display", "expected"),
        [
            ("DELIVERED", "delivered"),
            ("IN_TRANSIT", "in_transit"),
            ("OUT_FOR_DELIVERY", "out_for_delivery"),
            ("ATTEMPTED_DELIVERY", "attempted_delivery"),
            ("CARRIER_PICKED_UP", "carrier_picked_up"),
            ("DELAYED", "delayed"),
            ("FAILURE", "failure"),
            ("LABEL_PRINTED", "label_printed"),
            ("READY_FOR_PICKUP", "ready_for_pickup"),
            ("FULFILLED", None),
            ("MARKED_AS_FULFILLED", None),
            ("SUBMITTED", None),
            ("CANCELED", None),
            ("LABEL_VOIDED", None),
            ("RETURNING_TO_SENDER", "returning_to_sender"),  # unknown: kept verbatim
            (None, None),
            ("", None),
        ],
    )
    def test_fulfillment_display_status_becomes_shipment_status(
        self, display: str | None, expected: str | None
    ) -> None:
        assert backfill.shipment_status(display) == expected

    @pytest.mark.parametrize(
        ("display", "expected"),
        [
            ("FULFILLED", "fulfilled"),
            ("PARTIALLY_FULFILLED", "partial"),
            ("RESTOCKED", "restocked"),
            ("UNFULFILLED", None),
            ("IN_PROGRESS", None),
            ("ON_HOLD", None),
            (None, None),
        ],
    )
    def test_display_fulfillment_status_uses_the_rest_vocabulary(
        self, display: str | None, expected: str | None
    ) -> None:
        assert backfill.fulfillment_status(display) == expected

    def test_financial_status_is_lower_cased(self) -> None:
        assert backfill.financial_status("PARTIALLY_REFUNDED") == "partially_refunded"
        assert backfill.financial_status(None) is None

    def test_fulfillment_status_and_tracking(self) -> None:
        snap = backfill.fulfillment_snapshot(
            {
                "id": "gid://shopify/Fulfillment/9",
                "status": "CANCELLED",
                "displayStatus": "IN_TRANSIT",
                "createdAt": "2026-03-01T10:00:00Z",
                "updatedAt": "2026-03-02T10:00:00+05:30",
                "trackingInfo": [{"company": "Delhivery", "number": "DL1"}, {"company": "X", "number": "2"}],
            },
            order_id=7,
        )
        assert snap == FulfillmentSnapshot(
            id=9,
            order_id=7,
            status="cancelled",
            shipment_status="in_transit",
            tracking_company="Delhivery",
            tracking_number="DL1",
            created_at=datetime(2026, 3, 1, 10, 0, tzinfo=UTC),
            updated_at=datetime(2026, 3, 2, 4, 30, tzinfo=UTC),
        )
        bare = backfill.fulfillment_snapshot(
            {"id": "gid://shopify/Fulfillment/9", "trackingInfo": []}, order_id=7
        )
        assert (bare.tracking_company, bare.tracking_number, bare.shipment_status) == (None, None, None)


class TestScalars:
    def test_tags_become_the_webhook_string(self) -> None:
        assert backfill.tags_string(["vip", " rto ", "", 3]) == "vip, rto"
        assert backfill.tags_string([]) == ""
        assert backfill.tags_string("a, b") == "a, b"
        assert backfill.tags_string(None) == ""

    def test_money_and_times(self) -> None:
        order = backfill.order_snapshot(
            {
                "id": "gid://shopify/Order/1",
                "totalPriceSet": {"shopMoney": {"amount": "414.95"}},
                "currentTotalPriceSet": {"shopMoney": {"amount": "NaN"}},
                "createdAt": "2026-03-01T12:00:00Z",
                "updatedAt": "not a time",
                "processedAt": "2026-03-01T12:00:00",
            }
        )
        assert order.total_price == Decimal("414.95")
        assert order.current_total_price is None
        assert order.total_amount == Decimal("414.95")
        assert order.created_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        assert order.updated_at is None
        assert order.processed_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def test_negative_money_is_refused_like_the_webhook_models(self) -> None:
        order = backfill.order_snapshot({"id": "1", "totalPriceSet": {"shopMoney": {"amount": "-1.00"}}})
        assert order.total_price is None

    def test_nul_characters_are_dropped(self) -> None:
        customer = backfill.customer_snapshot({"id": "gid://shopify/Customer/1", "firstName": "A\x00sha"})
        assert customer.first_name == "Asha"

    def test_a_minimal_order(self) -> None:
        order = backfill.order_snapshot({"id": "gid://shopify/Order/5"})
        assert order == OrderSnapshot(id=5)


class TestAddresses:
    def test_customer_addresses_know_which_is_default(self) -> None:
        home = {"id": "gid://shopify/MailingAddress/11?model_name=CustomerAddress", "city": "Pune"}
        work = {"id": "gid://shopify/MailingAddress/12?model_name=CustomerAddress", "city": "Mumbai"}
        customer = backfill.customer_snapshot(
            {
                "id": "gid://shopify/Customer/1",
                "defaultAddress": work,
                "addresses": [home, work],
                "state": "ENABLED",
            }
        )
        assert [(a["id"], a["default"]) for a in customer.addresses] == [(11, False), (12, True)]
        assert customer.default_address is not None
        assert (customer.default_address["id"], customer.default_address["default"]) == (12, True)
        assert set(customer.default_address) == set(backfill.ADDRESS_KEYS)
        assert customer.state == "enabled"

    def test_order_addresses_have_no_id_like_rest(self) -> None:
        order = backfill.order_snapshot(
            {
                "id": "gid://shopify/Order/1",
                "shippingAddress": {
                    "id": "gid://shopify/MailingAddress/5",
                    "countryCode": "IN",
                    "zip": "560001",
                },
            }
        )
        assert order.shipping_address is not None
        assert order.shipping_address["id"] is None
        assert order.shipping_address["country_code"] == "IN"
        assert order.billing_address is None


class TestOrderChildren:
    LINE: dict[str, Any] = {
        "id": "gid://shopify/LineItem/3",
        "quantity": 2,
        "title": "Kurta",
        "originalUnitPriceSet": {"shopMoney": {"amount": "10.5"}},
        "product": {"id": "gid://shopify/Product/4"},
        "variant": None,
    }

    def test_line_items_from_a_bulk_result_a_page_and_edges(self) -> None:
        expected = [
            LineSnapshot(
                id=3,
                product_id=4,
                variant_id=None,
                title="Kurta",
                variant_title=None,
                vendor=None,
                sku=None,
                quantity=2,
                price=Decimal("10.5"),
            )
        ]
        for shape in (
            {"LineItem": [self.LINE]},
            {"lineItems": {"nodes": [self.LINE]}},
            {"lineItems": {"edges": [{"node": self.LINE}]}},
        ):
            assert backfill.order_snapshot({"id": "gid://shopify/Order/1", **shape}).lines == expected

    def test_fulfillments_inline_or_as_bulk_children(self) -> None:
        fulfillment = {"id": "gid://shopify/Fulfillment/8", "status": "SUCCESS", "displayStatus": "DELIVERED"}
        for shape in ({"fulfillments": [fulfillment]}, {"Fulfillment": [fulfillment]}):
            [snap] = backfill.order_snapshot({"id": "gid://shopify/Order/1", **shape}).fulfillments
            assert (snap.id, snap.order_id, snap.status, snap.shipment_status) == (
                8,
                1,
                "success",
                "delivered",
            )

    def test_a_repeated_line_id_keeps_the_last(self) -> None:
        second = {**self.LINE, "quantity": 5}
        order = backfill.order_snapshot({"id": "1", "LineItem": [self.LINE, second]})
        assert [line.quantity for line in order.lines] == [5]

    def test_the_customer_reference_becomes_a_stub(self) -> None:
        order = backfill.order_snapshot({"id": "1", "customer": {"id": "gid://shopify/Customer/77"}})
        assert order.customer == CustomerSnapshot(id=77)
        assert backfill.order_snapshot({"id": "1", "customer": {"id": None}}).customer is None

    def test_merge_line_items_appends_later_pages(self) -> None:
        node: dict[str, Any] = {
            "id": "gid://shopify/Order/1",
            "lineItems": {"nodes": [self.LINE], "pageInfo": {"hasNextPage": True}},
        }
        more = {**self.LINE, "id": "gid://shopify/LineItem/4"}
        merged = backfill.merge_line_items(node, [more])
        assert [line.id for line in backfill.order_snapshot(merged).lines] == [3, 4]
        assert len(node["lineItems"]["nodes"]) == 1  # the input is left alone


class TestDispatchAndQueries:
    def test_snapshot_picks_the_mapping_by_gid_type(self) -> None:
        assert isinstance(backfill.snapshot({"id": "gid://shopify/Customer/1"}), CustomerSnapshot)
        assert isinstance(backfill.snapshot({"id": "gid://shopify/Order/1"}), OrderSnapshot)
        assert backfill.snapshot({"id": "gid://shopify/Product/1"}) is None
        assert backfill.snapshot({"id": "12"}) is None

    def test_updated_since_filter(self) -> None:
        moment = datetime(2026, 3, 1, 17, 30, 5, 999_000, tzinfo=UTC)
        assert backfill.updated_since_filter(moment) == "updated_at:>'2026-03-01T17:30:05Z'"

    def test_bulk_queries_read_one_top_level_connection_each(self) -> None:
        assert "customers {" in backfill.CUSTOMERS_BULK_QUERY
        assert "orders" not in backfill.CUSTOMERS_BULK_QUERY
        assert "orders {" in backfill.ORDERS_BULK_QUERY
        assert "lineItems { edges { node {" in " ".join(backfill.ORDERS_BULK_QUERY.split())
        for query in (backfill.CUSTOMERS_BULK_QUERY, backfill.ORDERS_BULK_QUERY):
            assert "first:" not in query  # bulk operations page by themselves

    def test_page_queries_take_after_and_query(self) -> None:
        for query in (backfill.CUSTOMERS_PAGE_QUERY, backfill.ORDERS_PAGE_QUERY):
            assert "$after: String" in query
            assert "$query: String" in query
            assert "pageInfo { hasNextPage endCursor }" in query


def test_the_dataset_is_reproducible() -> None:
    first = twins.dataset(customers=3, orders=5, seed=1)
    second = twins.dataset(customers=3, orders=5, seed=1)
    assert first.orders_jsonl == second.orders_jsonl
    assert first.customers_jsonl == second.customers_jsonl
