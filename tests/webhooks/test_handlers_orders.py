"""orders/* through the worker (ordering: docs/architecture.md;
the order record, totals, COD, exact ids and money: docs/domain.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from service.config import Settings
from tests.support import deliveries as helpers
from tests.support.deliveries import ORDERS, SHOPS, Delivery, Sessionmaker
from tests.support.payloads import at, customer_payload, line_item, next_id, order_payload

pytestmark = pytest.mark.anyio

ORDER_TOPICS = [
    "orders/create",
    "orders/updated",
    "orders/cancelled",
    "orders/paid",
    "orders/fulfilled",
    "orders/partially_fulfilled",
]


class TestOrderFields:
    @pytest.mark.parametrize("topic", ORDER_TOPICS)
    async def test_every_order_topic_stores_the_order(
        self, sessionmaker: Sessionmaker, settings: Settings, topic: str
    ) -> None:
        order_id = next_id()
        await helpers.apply(sessionmaker, settings, [Delivery.of(topic, order_payload(order_id))])
        assert list(await helpers.orders(sessionmaker)) == [order_id]

    async def test_fields_are_stored(self, sessionmaker: Sessionmaker, settings: Settings) -> None:
        order_id, customer_id = next_id(), next_id()
        payload = order_payload(
            order_id,
            customer_id=customer_id,
            total="1499.00",
            created=at(0),
            updated=at(30),
            name="#1042",
            email="buyer@example.com",
            phone="+919800000002",
            financial_status="paid",
            fulfillment_status="partial",
            currency="INR",
            tags="vip, festive",
            cancelled_at="2026-03-01T18:00:00+05:30",
        )
        await helpers.apply(sessionmaker, settings, [Delivery.of("orders/updated", payload)])

        row = (await helpers.orders(sessionmaker))[order_id]
        expected: dict[str, Any] = {
            "name": "#1042",
            "customer_id": customer_id,
            "email": "buyer@example.com",
            "phone": "+919800000002",
            "created_at": at(0),
            "updated_at": at(30),
            "processed_at": at(0),
            "cancelled_at": datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
            "financial_status": "paid",
            "fulfillment_status": "partial",
            "currency": "INR",
            "total_amount": Decimal("1499.00"),
            "original_total": Decimal("1499.00"),
            "payment_method": "cod",
            "payment_gateway_names": ["Cash on Delivery (COD)"],
            "tags": "vip, festive",
            "test": False,
            "tracking_status": None,
        }
        assert {k: row[k] for k in expected} == expected
        assert row["shipping_address"]["city"] == "Bengaluru"
        assert row["billing_address"]["zip"] == "560001"

    async def test_line_items_are_stored(self, sessionmaker: Sessionmaker, settings: Settings) -> None:
        order_id = next_id()
        lines = [
            line_item(order_id + 1, price="349.50", quantity=2, sku="A-1", variant_title="Blue / S"),
            line_item(order_id + 2, price="0.00", quantity=1, product_id=None, variant_id=None, sku=None),
        ]
        await helpers.apply(
            sessionmaker, settings, [Delivery.of("orders/create", order_payload(order_id, lines=lines))]
        )

        stored = (await helpers.order_lines(sessionmaker))[order_id]
        assert {
            line_id: (row["quantity"], row["price"], row["sku"], row["variant_title"], row["product_id"])
            for line_id, row in stored.items()
        } == {
            order_id + 1: (2, Decimal("349.50"), "A-1", "Blue / S", 9_100_000_000_001),
            order_id + 2: (1, Decimal("0.00"), None, "Red / M", None),
        }
        assert stored[order_id + 1]["title"] == "Cotton Kurta"
        assert stored[order_id + 1]["vendor"] == "Weavers Co"
        assert stored[order_id + 1]["variant_id"] == 9_200_000_000_001

    @pytest.mark.parametrize(("flag", "expected"), [(True, True), (False, False), (None, False)])
    async def test_test_flag_is_stored(
        self, sessionmaker: Sessionmaker, settings: Settings, flag: bool | None, expected: bool
    ) -> None:
        order_id = next_id()
        await helpers.apply(
            sessionmaker, settings, [Delivery.of("orders/create", order_payload(order_id, test=flag))]
        )
        assert (await helpers.orders(sessionmaker))[order_id]["test"] is expected


class TestTotals:
    async def test_total_amount_and_original_total(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        # (total_price, current_total_price or a marker) -> (total_amount, original_total)
        absent = object()
        table: list[tuple[str, object, Decimal, Decimal]] = [
            ("999.00", "849.00", Decimal("849.00"), Decimal("999.00")),  # edited or refunded: current
            ("999.00", "1049.00", Decimal("1049.00"), Decimal("999.00")),  # items added: current
            ("999.00", absent, Decimal("999.00"), Decimal("999.00")),  # no current_total_price: total
            ("999.00", None, Decimal("999.00"), Decimal("999.00")),  # null current_total_price: total
            ("999.00", "0.00", Decimal("0.00"), Decimal("999.00")),  # fully refunded stays 0
        ]
        deliveries, order_ids = [], []
        for total, current, _, _ in table:
            order_id = next_id()
            payload = order_payload(order_id, total=total)
            if current is absent:
                del payload["current_total_price"]
            else:
                payload["current_total_price"] = current
            order_ids.append(order_id)
            deliveries.append(Delivery.of("orders/create", payload))
        await helpers.apply(sessionmaker, settings, deliveries)

        stored = await helpers.orders(sessionmaker)
        actual = [(stored[i]["total_amount"], stored[i]["original_total"]) for i in order_ids]
        assert actual == [(amount, original) for _, _, amount, original in table]


class TestPaymentMethod:
    GATEWAYS: list[tuple[list[str], str]] = [
        (["Cash on Delivery (COD)"], "cod"),
        (["cash on delivery (cod)"], "cod"),
        (["CASH ON DELIVERY (COD)"], "cod"),
        (["cash_on_delivery"], "cod"),
        (["Cash_On_Delivery"], "cod"),
        (["cod"], "cod"),
        (["COD"], "cod"),
        ([" cod "], "cod"),
        (["shopify_payments", "cod"], "cod"),
        (["shopify_payments"], "prepaid"),
        (["codfish"], "prepaid"),
        (["Cash on Delivery"], "prepaid"),
        (["razorpay", "gift_card"], "prepaid"),
        ([], "prepaid"),
    ]

    async def _methods(
        self, sessionmaker: Sessionmaker, settings: Settings, cases: list[list[str]]
    ) -> list[str]:
        order_ids = [next_id() for _ in cases]
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of("orders/create", order_payload(order_id, gateways=gateways))
                for order_id, gateways in zip(order_ids, cases, strict=True)
            ],
        )
        stored = await helpers.orders(sessionmaker)
        return [stored[order_id]["payment_method"] for order_id in order_ids]

    async def test_default_cod_gateways_in_any_letter_case(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        cases = [gateways for gateways, _ in self.GATEWAYS]
        methods = await self._methods(sessionmaker, settings, cases)
        assert list(zip(cases, methods, strict=True)) == self.GATEWAYS

    async def test_missing_gateway_names_are_prepaid(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        order_id = next_id()
        payload = order_payload(order_id, payment_gateway_names=None)
        await helpers.apply(sessionmaker, settings, [Delivery.of("orders/create", payload)])
        assert (await helpers.orders(sessionmaker))[order_id]["payment_method"] == "prepaid"

    async def test_the_shop_cod_gateway_setting_changes_the_detection(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        await helpers.set_shop_settings(sessionmaker, {"codGateways": ["Pay at door"]})
        cases = [
            ["Pay at door"],
            ["PAY AT DOOR"],
            ["stripe", "pay at door"],
            ["Cash on Delivery (COD)"],
            ["cod"],
        ]
        methods = await self._methods(sessionmaker, settings, cases)
        assert methods == ["cod", "cod", "cod", "prepaid", "prepaid"]

    async def test_the_setting_of_one_shop_does_not_affect_another(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        await helpers.set_shop_settings(sessionmaker, {"codGateways": ["Pay at door"]})
        other = "cod-other.myshopify.com"
        order_id = next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [Delivery.of("orders/create", order_payload(order_id, gateways=["cod"]))],
            shop=other,
        )
        assert (await helpers.orders(sessionmaker, shop=other))[order_id]["payment_method"] == "cod"


class TestLineItemVersions:
    async def test_a_newer_update_replaces_the_lines_and_an_older_one_keeps_them(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        order_id = next_id()
        a, b, c, stale = order_id + 1, order_id + 2, order_id + 3, order_id + 4

        def version(minutes: int, lines: list[dict[str, Any]]) -> Delivery:
            return Delivery.of("orders/updated", order_payload(order_id, updated=at(minutes), lines=lines))

        await helpers.apply(
            sessionmaker, settings, [version(0, [line_item(a, quantity=1), line_item(b, quantity=1)])]
        )
        await helpers.apply(
            sessionmaker, settings, [version(10, [line_item(b, quantity=3), line_item(c, quantity=1)])]
        )
        after_newer = (await helpers.order_lines(sessionmaker))[order_id]
        assert {line_id: row["quantity"] for line_id, row in after_newer.items()} == {b: 3, c: 1}

        await helpers.apply(sessionmaker, settings, [version(5, [line_item(stale, quantity=9)])])
        assert (await helpers.order_lines(sessionmaker))[order_id] == after_newer
        assert (await helpers.orders(sessionmaker))[order_id]["updated_at"] == at(10)

    async def test_an_update_without_lines_empties_them(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        order_id = next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of("orders/create", order_payload(order_id, updated=at(0))),
                Delivery.of("orders/updated", order_payload(order_id, updated=at(1), lines=[])),
            ],
        )
        assert order_id not in await helpers.order_lines(sessionmaker)


class TestOrderOrdering:
    async def test_an_older_update_after_a_newer_one_is_ignored(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        order_id = next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of("orders/paid", order_payload(order_id, updated=at(20), total="500.00")),
                Delivery.of("orders/create", order_payload(order_id, updated=at(0), total="900.00")),
            ],
        )
        row = (await helpers.orders(sessionmaker))[order_id]
        assert (row["total_amount"], row["updated_at"]) == (Decimal("500.00"), at(20))

    async def test_an_equal_updated_at_applies(self, sessionmaker: Sessionmaker, settings: Settings) -> None:
        order_id = next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of(
                    "orders/create", order_payload(order_id, updated=at(5), financial_status="pending")
                ),
                Delivery.of("orders/paid", order_payload(order_id, updated=at(5), financial_status="paid")),
            ],
        )
        assert (await helpers.orders(sessionmaker))[order_id]["financial_status"] == "paid"


class TestOrderDelete:
    async def test_delete_removes_the_order_and_its_lines(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        order_id, kept = next_id(), next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of("orders/create", order_payload(order_id)),
                Delivery.of("orders/create", order_payload(kept)),
                Delivery.of("orders/delete", {"id": order_id}),
            ],
        )
        assert list(await helpers.orders(sessionmaker)) == [kept]
        assert list(await helpers.order_lines(sessionmaker)) == [kept]
        assert await helpers.tombstones(sessionmaker) == {("order", order_id)}

    @pytest.mark.parametrize("delete_first", [False, True], ids=["delete-after", "delete-before"])
    async def test_a_later_update_does_not_resurrect_it(
        self, sessionmaker: Sessionmaker, settings: Settings, delete_first: bool
    ) -> None:
        order_id = next_id()
        create = Delivery.of("orders/create", order_payload(order_id, updated=at(0)))
        delete = Delivery.of("orders/delete", {"id": order_id})
        newer = Delivery.of("orders/updated", order_payload(order_id, updated=at(90)))
        sequence = [delete, create, newer] if delete_first else [create, delete, newer]
        await helpers.apply(sessionmaker, settings, sequence)
        assert await helpers.orders(sessionmaker) == {}
        assert await helpers.order_lines(sessionmaker) == {}
        assert [row["status"] for row in await helpers.deliveries(sessionmaker)] == ["processed"] * 3


class TestEmbeddedCustomer:
    async def test_an_order_creates_its_unseen_customer_from_the_embedded_object(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        order_id, customer_id = next_id(), next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [Delivery.of("orders/create", order_payload(order_id, customer_id=customer_id))],
        )
        row = (await helpers.customers(sessionmaker))[customer_id]
        assert (row["email"], row["first_name"], row["last_name"], row["state"]) == (
            f"asha{customer_id}@example.com",
            "Asha",
            "Rao",
            "disabled",
        )
        assert (await helpers.orders(sessionmaker))[order_id]["customer_id"] == customer_id

    @pytest.mark.parametrize("customer_first", [True, False], ids=["customer-first", "order-first"])
    async def test_a_stub_never_overwrites_a_customer_from_customers_payloads(
        self, sessionmaker: Sessionmaker, settings: Settings, customer_first: bool
    ) -> None:
        order_id, customer_id = next_id(), next_id()
        # The customers/* payload is older than the order: it still outranks the order's stub.
        customer = Delivery.of(
            "customers/create",
            customer_payload(customer_id, updated=at(0), email="real@example.com", first_name="Real"),
        )
        order = Delivery.of("orders/create", order_payload(order_id, customer_id=customer_id, updated=at(60)))
        await helpers.apply(
            sessionmaker, settings, [customer, order] if customer_first else [order, customer]
        )

        row = (await helpers.customers(sessionmaker))[customer_id]
        assert (row["email"], row["first_name"], row["updated_at"]) == ("real@example.com", "Real", at(0))
        assert row["default_address"] is not None

    async def test_a_newer_order_refreshes_a_stub_and_an_older_one_does_not(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customer_id = next_id()

        def order(minutes: int, email: str) -> Delivery:
            payload = order_payload(next_id(), customer_id=customer_id, updated=at(minutes))
            payload["customer"]["email"] = email
            return Delivery.of("orders/create", payload)

        await helpers.apply(
            sessionmaker, settings, [order(10, "ten@example.com"), order(5, "five@example.com")]
        )
        assert (await helpers.customers(sessionmaker))[customer_id]["email"] == "ten@example.com"
        await helpers.apply(sessionmaker, settings, [order(20, "twenty@example.com")])
        assert (await helpers.customers(sessionmaker))[customer_id]["email"] == "twenty@example.com"

    async def test_an_order_does_not_recreate_a_deleted_customer(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        order_id, customer_id = next_id(), next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of("customers/delete", {"id": customer_id}),
                Delivery.of(
                    "orders/create", order_payload(order_id, customer_id=customer_id, updated=at(60))
                ),
            ],
        )
        assert await helpers.customers(sessionmaker) == {}
        assert (await helpers.orders(sessionmaker))[order_id]["customer_id"] == customer_id


class TestExactIds:
    async def test_ids_above_2_pow_53_round_trip_exactly(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        order_id, customer_id, line_id = 2**53 + 1, 2**63 - 1, 2**63 - 2
        product_id, variant_id, address_id = 2**53 + 3, 2**62 + 5, 2**63 - 3
        customer = customer_payload(customer_id)
        customer["default_address"]["id"] = address_id
        customer["addresses"] = [customer["default_address"]]
        order = order_payload(
            order_id,
            customer_id=customer_id,
            lines=[line_item(line_id, product_id=product_id, variant_id=variant_id)],
        )
        await helpers.apply(
            sessionmaker,
            settings,
            [Delivery.of("customers/create", customer), Delivery.of("orders/create", order)],
        )

        stored_order = (await helpers.orders(sessionmaker))[order_id]
        assert stored_order["id"] == order_id
        assert stored_order["customer_id"] == customer_id
        (line,) = (await helpers.order_lines(sessionmaker))[order_id].values()
        assert (line["id"], line["product_id"], line["variant_id"]) == (line_id, product_id, variant_id)
        stored_customer = (await helpers.customers(sessionmaker))[customer_id]
        assert stored_customer["default_address"]["id"] == address_id
        assert stored_customer["addresses"][0]["id"] == address_id


class TestMoney:
    async def test_amounts_keep_exact_decimals(self, sessionmaker: Sessionmaker, settings: Settings) -> None:
        amounts = ["1234567.89", "0.10", "0.20", "0.01", "12.345", "99999999999.99"]
        order_ids = [next_id() for _ in amounts]
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of("orders/create", order_payload(order_id, total=amount))
                for order_id, amount in zip(order_ids, amounts, strict=True)
            ],
        )
        stored = await helpers.orders(sessionmaker)
        assert [stored[i]["total_amount"] for i in order_ids] == [Decimal(a) for a in amounts]
        assert all(isinstance(stored[i]["total_amount"], Decimal) for i in order_ids)
        lines = await helpers.order_lines(sessionmaker)
        assert [next(iter(lines[i].values()))["price"] for i in order_ids] == [Decimal(a) for a in amounts]

    async def test_sums_in_sql_are_exact(self, sessionmaker: Sessionmaker, settings: Settings) -> None:
        amounts = ["0.10", "0.20", "1234567.89", "0.01"] + ["0.10"] * 7
        await helpers.apply(
            sessionmaker,
            settings,
            [Delivery.of("orders/create", order_payload(next_id(), total=amount)) for amount in amounts],
        )
        shop_id = sa.select(SHOPS.c.id).where(SHOPS.c.domain == "acme-test.myshopify.com").scalar_subquery()
        async with sessionmaker() as session:
            small = await session.scalar(
                sa.select(sa.func.sum(ORDERS.c.total_amount)).where(
                    ORDERS.c.shop_id == shop_id, ORDERS.c.total_amount < 1
                )
            )
            total = await session.scalar(
                sa.select(sa.func.sum(ORDERS.c.total_amount)).where(ORDERS.c.shop_id == shop_id)
            )
        assert isinstance(small, Decimal)
        assert small == Decimal("1.01")  # 0.1 + 0.2 + 0.01 + 7 * 0.1; floats drift here
        assert total == Decimal("1234568.90")
