"""customers/create|update|delete through the worker (ordering:
docs/architecture.md; the customer record: docs/domain.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.config import Settings
from tests.support import deliveries as helpers
from tests.support.deliveries import Delivery, Sessionmaker
from tests.support.payloads import address, at, customer_payload, next_id

pytestmark = pytest.mark.anyio


class TestCustomerCreateAndUpdate:
    async def test_fields_and_addresses_are_stored(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customer_id = next_id()
        second = address(id=customer_id + 2, address1="4 Park Street", city="Kolkata", default=False)
        payload = customer_payload(
            customer_id,
            updated=at(5),
            email="meera@example.com",
            phone="+919800000001",
            first_name="Meera",
            last_name="Iyer",
            state="enabled",
            created_at="2026-02-01T10:30:00+05:30",
        )
        payload["addresses"] = [payload["default_address"], second]
        await helpers.apply(sessionmaker, settings, [Delivery.of("customers/create", payload)])

        row = (await helpers.customers(sessionmaker))[customer_id]
        assert {k: row[k] for k in ("email", "phone", "first_name", "last_name", "state")} == {
            "email": "meera@example.com",
            "phone": "+919800000001",
            "first_name": "Meera",
            "last_name": "Iyer",
            "state": "enabled",
        }
        assert row["created_at"] == datetime(2026, 2, 1, 5, 0, tzinfo=UTC)
        assert row["updated_at"] == at(5)
        assert row["default_address"]["id"] == customer_id + 1
        assert row["default_address"]["address1"] == "12 MG Road"
        assert row["default_address"]["default"] is True
        assert [(a["id"], a["city"]) for a in row["addresses"]] == [
            (customer_id + 1, "Bengaluru"),
            (customer_id + 2, "Kolkata"),
        ]

    async def test_a_newer_update_replaces_the_fields(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customer_id = next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of("customers/create", customer_payload(customer_id, updated=at(0))),
                Delivery.of(
                    "customers/update",
                    customer_payload(
                        customer_id,
                        updated=at(10),
                        email="new@example.com",
                        phone=None,
                        addresses=[],
                        default_address=None,
                    ),
                ),
            ],
        )
        row = (await helpers.customers(sessionmaker))[customer_id]
        assert (row["email"], row["phone"], row["addresses"], row["default_address"]) == (
            "new@example.com",
            None,
            [],
            None,
        )
        assert row["updated_at"] == at(10)

    async def test_customers_are_kept_per_shop(self, sessionmaker: Sessionmaker, settings: Settings) -> None:
        customer_id = next_id()
        other = "customers-other.myshopify.com"
        await helpers.apply(
            sessionmaker,
            settings,
            [Delivery.of("customers/create", customer_payload(customer_id, email="a@x.io"))],
        )
        await helpers.apply(
            sessionmaker,
            settings,
            [Delivery.of("customers/create", customer_payload(customer_id, email="b@x.io"))],
            shop=other,
        )
        assert (await helpers.customers(sessionmaker))[customer_id]["email"] == "a@x.io"
        assert (await helpers.customers(sessionmaker, shop=other))[customer_id]["email"] == "b@x.io"


class TestCustomerOrdering:
    @pytest.mark.parametrize(
        ("first", "second", "expected_email"),
        [
            (at(10), at(0), "v10@example.com"),  # older after newer: ignored
            (at(0), at(10), "v10@example.com"),  # newer after older: applied
            (at(10), at(10) + timedelta(seconds=-1), "v10@example.com"),  # one second older: ignored
        ],
        ids=["older-after-newer", "newer-after-older", "one-second-older"],
    )
    async def test_the_newest_updated_at_wins_in_any_order(
        self,
        sessionmaker: Sessionmaker,
        settings: Settings,
        first: datetime,
        second: datetime,
        expected_email: str,
    ) -> None:
        customer_id = next_id()

        def version(moment: datetime) -> Delivery:
            minutes = int((moment - at(0)).total_seconds() // 60)
            return Delivery.of(
                "customers/update",
                customer_payload(customer_id, updated=moment, email=f"v{minutes}@example.com"),
            )

        await helpers.apply(sessionmaker, settings, [version(first), version(second)])
        row = (await helpers.customers(sessionmaker))[customer_id]
        assert row["email"] == expected_email
        assert row["updated_at"] == max(first, second)

    async def test_an_equal_updated_at_applies(self, sessionmaker: Sessionmaker, settings: Settings) -> None:
        customer_id = next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of("customers/create", customer_payload(customer_id, updated=at(3), first_name="A")),
                Delivery.of("customers/update", customer_payload(customer_id, updated=at(3), first_name="B")),
            ],
        )
        assert (await helpers.customers(sessionmaker))[customer_id]["first_name"] == "B"

    async def test_the_same_update_delivered_twice_is_idempotent(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customer_id = next_id()
        update = Delivery.of("customers/update", customer_payload(customer_id, updated=at(7)))
        await helpers.apply(sessionmaker, settings, [update])
        once = await helpers.customers(sessionmaker)
        await helpers.apply(sessionmaker, settings, [update, update])  # new webhook ids, same content
        assert await helpers.customers(sessionmaker) == once
        assert {row["status"] for row in await helpers.deliveries(sessionmaker)} == {"processed"}


class TestCustomerDelete:
    async def test_delete_removes_the_customer_and_leaves_a_tombstone(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customer_id, kept = next_id(), next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of("customers/create", customer_payload(customer_id)),
                Delivery.of("customers/create", customer_payload(kept)),
                Delivery.of("customers/delete", {"id": customer_id}),
            ],
        )
        assert list(await helpers.customers(sessionmaker)) == [kept]
        assert await helpers.tombstones(sessionmaker) == {("customer", customer_id)}

    @pytest.mark.parametrize("topic", ["customers/update", "customers/create"])
    async def test_a_later_delivery_even_newer_does_not_recreate_it(
        self, sessionmaker: Sessionmaker, settings: Settings, topic: str
    ) -> None:
        customer_id = next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of("customers/create", customer_payload(customer_id, updated=at(0))),
                Delivery.of("customers/delete", {"id": customer_id}),
                Delivery.of(topic, customer_payload(customer_id, updated=at(60))),
            ],
        )
        assert await helpers.customers(sessionmaker) == {}
        assert [row["status"] for row in await helpers.deliveries(sessionmaker)] == ["processed"] * 3

    async def test_a_delete_that_arrives_first_still_wins(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customer_id = next_id()
        await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of("customers/delete", {"id": customer_id}),
                Delivery.of("customers/create", customer_payload(customer_id, updated=at(0))),
            ],
        )
        assert await helpers.customers(sessionmaker) == {}
        assert await helpers.tombstones(sessionmaker) == {("customer", customer_id)}

    async def test_a_repeated_delete_is_harmless(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customer_id = next_id()
        delete = Delivery.of("customers/delete", {"id": customer_id})
        await helpers.apply(sessionmaker, settings, [delete, delete])
        assert await helpers.tombstones(sessionmaker) == {("customer", customer_id)}
        assert [row["status"] for row in await helpers.deliveries(sessionmaker)] == ["processed"] * 2
