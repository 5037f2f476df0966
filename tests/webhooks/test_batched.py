"""A batch applied whole (figures recomputed once, :mod:`service.domain.deferred`) leaves exactly
what the same deliveries leave applied one per batch: figures, tier of record, tier history,
tracking. Each history runs twice through the real worker, once per shop: one delivery per batch
in ``SHOP``, whole batches in ``OTHER_SHOP``, and every row is compared.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlmodel import SQLModel

from service.config import Settings
from service.db import session_scope
from service.domain.deferred import DeferredFigures
from service.domain.settings import ShopSettings
from tests.conftest import make_settings
from tests.support import deliveries as helpers
from tests.support.deliveries import Delivery, Sessionmaker
from tests.support.marks import first_in_fast_runs
from tests.support.payloads import (
    COD,
    OTHER_SHOP,
    SHOP,
    at,
    customer_payload,
    fulfillment_event_payload,
    fulfillment_payload,
    next_id,
    order_payload,
    refund_payload,
    return_payload,
)

pytestmark = pytest.mark.anyio


def order(
    order_id: int, customer_id: int, total: str, updated: float = 0, *, created: float = 0, **extra: Any
) -> Delivery:
    """An order created at minute ``created``; ``orders/create`` unless ``updated`` is later."""
    payload = order_payload(
        order_id,
        customer_id=customer_id,
        total=total,
        created=at(created),
        updated=at(max(updated, created)),
        **extra,
    )
    return Delivery.of("orders/create" if updated <= created else "orders/updated", payload)


def shipped(fulfillment_id: int, order_id: int, status: str, minutes: float) -> Delivery:
    payload = fulfillment_payload(
        fulfillment_id, order_id, shipment_status=status, created=at(1), updated=at(minutes)
    )
    return Delivery.of("fulfillments/update", payload)


def event(fulfillment_id: int, order_id: int, status: str, minutes: float) -> Delivery:
    payload = fulfillment_event_payload(next_id(), fulfillment_id, order_id, status, happened=at(minutes))
    return Delivery.of("fulfillment_events/create", payload)


def history() -> list[Delivery]:
    """Two customers over a dozen orders: deliveries that move tiers twice in a row, an order that
    changes customer, an order created and deleted in one batch, RTO by tag and by return, a
    customer deletion between order deliveries (it is not batchable), refunds."""
    ana, ben, cat = next_id(), next_id(), next_id()
    o1, o2, o3, o4, o5, o6 = (next_id() for _ in range(6))
    f1, f2, f4, f5 = (next_id() for _ in range(4))
    return [
        Delivery.of("customers/create", customer_payload(ana)),
        order(o1, ana, "12000.00"),
        shipped(f1, o1, "in_transit", 2),
        event(f1, o1, "delivered", 3),  # ana: silver
        order(o2, ana, "20000.00", created=3.5),
        shipped(f2, o2, "delivered", 4),  # ana: gold, in the same batch as silver
        order(o3, ben, "30000.00", created=4.5, gateways=COD),
        order(o3, ana, "30000.00", updated=5, created=4.5, gateways=COD),  # o3 moves from ben to ana
        Delivery.of("orders/delete", {"id": o6}),
        order(o6, ben, "99.00"),  # deleted before it arrives: never counts
        order(o4, cat, "60000.00", gateways=COD),
        shipped(f4, o4, "delivered", 6),  # cat: platinum
        order(o4, cat, "60000.00", updated=7, gateways=COD, tags="RTO"),  # cat: back to bronze
        Delivery.of("customers/delete", {"id": ben}),
        order(o5, ben, "15000.00"),
        shipped(f5, o5, "delivered", 8),
        Delivery.of("returns/request", return_payload(next_id(), o5), triggered_at=at(9)),
        Delivery.of("refunds/create", refund_payload(next_id(), o2, amount="500.00")),
        order(o2, ana, "19500.00", updated=10, created=3.5),
        Delivery.of("orders/delete", {"id": o1}),  # ana loses an order in the last batch
    ]


def snapshot_storm(seed: int) -> list[Delivery]:
    """Runs of order snapshots: 30 orders of 4 customers, each created then updated a few times,
    versions arriving out of order (stale ones), RTO tags that come and go, orders that change
    customer, two orders deleted before or after they arrive, and updates that embed a delivered
    fulfillment (a tier trigger inside a run of snapshots)."""
    rng = random.Random(seed)
    people = [next_id() for _ in range(4)]
    deliveries: list[Delivery] = []
    versions: list[Delivery] = []
    order_ids = [next_id() for _ in range(30)]
    for n, order_id in enumerate(order_ids):
        buyer = rng.choice(people)
        total = f"{rng.choice([900, 4000, 9000, 16000])}.00"
        gateways = COD if n % 3 == 0 else None
        deliveries.append(order(order_id, buyer, total, gateways=gateways))
        for version in range(1, rng.randint(1, 4)):
            tags = "RTO" if rng.random() < 0.25 else ""
            if rng.random() < 0.15:
                buyer = rng.choice(people)
            extra: dict[str, Any] = {}
            if rng.random() < 0.1:
                extra["fulfillments"] = [
                    fulfillment_payload(
                        next_id(), order_id, shipment_status="delivered", created=at(1), updated=at(version)
                    )
                ]
            versions.append(order(order_id, buyer, total, updated=version + n / 100, tags=tags, **extra))
    rng.shuffle(versions)
    deliveries.extend(versions)
    deliveries.insert(5, Delivery.of("orders/delete", {"id": order_ids[-1]}))
    deliveries.append(Delivery.of("orders/delete", {"id": order_ids[0]}))
    return deliveries


def fact_storm(seed: int) -> tuple[list[Delivery], list[Delivery]]:
    """(setup, facts): 24 orders of 3 customers, then their fulfillments and carrier events in
    time order, so consecutive deliveries are for different orders (as carriers send them)."""
    rng = random.Random(seed)
    people = [next_id() for _ in range(3)]
    setup: list[Delivery] = []
    facts: list[tuple[float, Delivery]] = []
    for n in range(24):
        order_id, fulfillment_id = next_id(), next_id()
        total = f"{rng.choice([3000, 7000, 12000])}.00"
        setup.append(order(order_id, rng.choice(people), total, gateways=COD if n % 2 else None))
        shipped_at = n + rng.random()
        facts.append((shipped_at, shipped(fulfillment_id, order_id, "confirmed", shipped_at)))
        for step, status in enumerate(rng.choice(STORIES), start=1):
            at_minutes = shipped_at + step * 30 + rng.random() * 20
            facts.append((at_minutes, event(fulfillment_id, order_id, status, at_minutes)))
    facts.sort(key=lambda f: f[0])
    return setup, [d for _, d in facts]


def mixed_storm(seed: int) -> list[Delivery]:
    """Everything interleaved at random: creations, updates (stale ones too, RTO tags that come
    and go, customers that change), shipments, carrier events, return requests, refunds,
    customer updates and a deletion of each kind, so runs of each kind start and end anywhere."""
    rng = random.Random(seed)
    people = [next_id() for _ in range(4)]
    deliveries: list[Delivery] = [Delivery.of("customers/create", customer_payload(p)) for p in people]
    later: list[Delivery] = []
    order_ids: list[int] = []
    for n in range(20):
        order_id, fulfillment_id = next_id(), next_id()
        order_ids.append(order_id)
        buyer, total = rng.choice(people), f"{rng.choice([2000, 6000, 11000, 27000])}.00"
        gateways = COD if rng.random() < 0.5 else None
        deliveries.append(order(order_id, buyer, total, gateways=gateways))
        for version in range(1, rng.randint(1, 3)):
            tags = "RTO" if rng.random() < 0.2 else ""
            buyer = rng.choice(people) if rng.random() < 0.1 else buyer
            later.append(
                order(order_id, buyer, total, updated=version + n / 100, gateways=gateways, tags=tags)
            )
        later.append(shipped(fulfillment_id, order_id, "confirmed", 1 + n / 10))
        for step, status in enumerate(rng.choice(STORIES), start=1):
            later.append(event(fulfillment_id, order_id, status, 2 + step * 3 + n / 10))
        if rng.random() < 0.2:
            later.append(
                Delivery.of(
                    "returns/request", return_payload(next_id(), order_id), triggered_at=at(3 + n / 10)
                )
            )
        if rng.random() < 0.2:
            later.append(Delivery.of("refunds/create", refund_payload(next_id(), order_id, amount="100.00")))
    later.append(Delivery.of("customers/update", customer_payload(people[0], updated=at(50))))
    later.append(Delivery.of("orders/delete", {"id": rng.choice(order_ids)}))
    later.append(Delivery.of("customers/delete", {"id": people[-1]}))
    rng.shuffle(later)
    return deliveries + later


STORIES = [
    ("in_transit", "delivered"),
    ("in_transit", "out_for_delivery", "delivered"),
    ("in_transit", "failure"),
    ("in_transit",),
]


def fallback_count() -> float:
    return REGISTRY.get_sample_value("tierline_worker_batch_fallbacks_total") or 0.0


def without_shop(rows: list[dict[str, Any]], *drop: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in ("shop_id", "id", "at", *drop)} for row in rows]


async def rows_of(sessionmaker: Sessionmaker, table: str, shop: str) -> list[dict[str, Any]]:
    """Every row of a table for one shop, without the shop id, in primary-key order."""
    t = SQLModel.metadata.tables[table]
    async with session_scope(sessionmaker, readonly=True) as session:
        shop_id = await session.scalar(sa.select(helpers.SHOPS.c.id).where(helpers.SHOPS.c.domain == shop))
        result = await session.execute(
            sa.select(t).where(t.c.shop_id == shop_id).order_by(*t.primary_key.columns)
        )
        return without_shop([dict(row._mapping) for row in result], "created_at")


@contextlib.contextmanager
def count_statements(sessionmaker: Sessionmaker) -> Iterator[list[int]]:
    """Statements sent to the database inside the block (an ``executemany`` counts once)."""
    engine = sessionmaker.kw["bind"].sync_engine
    counted = [0]

    def count(*_: Any) -> None:
        counted[0] += 1

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield counted
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


async def state(sessionmaker: Sessionmaker, shop: str) -> dict[str, Any]:
    stats = await helpers.customer_stats(sessionmaker, shop=shop)
    orders = await helpers.orders(sessionmaker, shop=shop)
    return {
        "stats": {cid: without_shop([row])[0] for cid, row in sorted(stats.items())},
        "tracking": {
            oid: (row["tracking_status"], row["delivered_at"], row["rto_source"], row["customer_id"])
            for oid, row in sorted(orders.items())
        },
        "history": without_shop(await helpers.tier_changes(sessionmaker, shop=shop)),
    }


async def apply_in(
    sessionmaker: Sessionmaker, settings: Settings, deliveries: list[Delivery], shop: str, batch: int
) -> None:
    worker_settings = make_settings(settings.database_url, TIERLINE_WORKER_BATCH=batch)
    await helpers.enqueue_many(sessionmaker, deliveries, shop=shop)
    await helpers.make_worker(sessionmaker, worker_settings).drain()


class TestBatchEqualsOneByOne:
    async def test_every_figure_tier_and_history_row_is_the_same(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        deliveries = history()
        await apply_in(sessionmaker, settings, deliveries, SHOP, batch=1)
        await apply_in(sessionmaker, settings, deliveries, OTHER_SHOP, batch=100)

        one_by_one, batched = await state(sessionmaker, SHOP), await state(sessionmaker, OTHER_SHOP)
        assert batched == one_by_one
        # the history is not trivially empty: cat's two moves (in one batch) are there, in order
        cat = next(h["customer_id"] for h in one_by_one["history"] if h["to_tier"] == "platinum")
        of_cat = [h for h in one_by_one["history"] if h["customer_id"] == cat]
        assert [(h["from_tier"], h["to_tier"], h["reason"]) for h in of_cat] == [
            (None, "platinum", "delivered"),
            ("platinum", "bronze", "rto"),
        ]
        statuses = {s["status"] for s in await helpers.deliveries(sessionmaker, shop=OTHER_SHOP)}
        assert statuses == {"processed"}

    @pytest.mark.parametrize("seed", first_in_fast_runs(1, 2, 3))
    async def test_runs_of_order_snapshots_applied_as_sets(
        self, sessionmaker: Sessionmaker, settings: Settings, seed: int
    ) -> None:
        deliveries = snapshot_storm(seed)
        await apply_in(sessionmaker, settings, deliveries, SHOP, batch=1)
        fallbacks = fallback_count()
        await apply_in(sessionmaker, settings, deliveries, OTHER_SHOP, batch=100)
        assert fallback_count() == fallbacks  # applied whole, never rolled back to one by one

        one_by_one, batched = await state(sessionmaker, SHOP), await state(sessionmaker, OTHER_SHOP)
        assert batched == one_by_one
        for table in ("orders", "order_lines", "customers"):
            assert await rows_of(sessionmaker, table, OTHER_SHOP) == await rows_of(sessionmaker, table, SHOP)
        assert len(one_by_one["tracking"]) == 28

    @pytest.mark.parametrize("seed", first_in_fast_runs(1, 2, 3))
    async def test_runs_of_fulfillments_and_events_applied_as_sets(
        self, sessionmaker: Sessionmaker, settings: Settings, seed: int
    ) -> None:
        setup, facts = fact_storm(seed)
        for shop, batch in ((SHOP, 1), (OTHER_SHOP, 100)):
            await apply_in(sessionmaker, settings, setup, shop, batch=batch)
            await apply_in(sessionmaker, settings, facts, shop, batch=batch)

        one_by_one, batched = await state(sessionmaker, SHOP), await state(sessionmaker, OTHER_SHOP)
        assert batched == one_by_one
        assert sum(1 for t in one_by_one["tracking"].values() if t[0] == "delivered") > 5
        for table in ("fulfillments", "fulfillment_events"):
            assert await rows_of(sessionmaker, table, OTHER_SHOP) == await rows_of(sessionmaker, table, SHOP)

    @pytest.mark.parametrize("seed", first_in_fast_runs(1, 2, 3, 4))
    async def test_everything_interleaved(
        self, sessionmaker: Sessionmaker, settings: Settings, seed: int
    ) -> None:
        deliveries = mixed_storm(seed)
        await apply_in(sessionmaker, settings, deliveries, SHOP, batch=1)
        fallbacks = fallback_count()
        await apply_in(sessionmaker, settings, deliveries, OTHER_SHOP, batch=100)
        assert fallback_count() == fallbacks

        one_by_one, batched = await state(sessionmaker, SHOP), await state(sessionmaker, OTHER_SHOP)
        assert batched == one_by_one
        assert one_by_one["history"]  # triggers fired
        for table in ("orders", "order_lines", "customers", "fulfillments", "fulfillment_events", "returns"):
            assert await rows_of(sessionmaker, table, OTHER_SHOP) == await rows_of(sessionmaker, table, SHOP)

    async def test_a_trigger_before_an_rto_move_of_the_same_customer_in_one_run(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        """One run: the first order is delivered (at minute 40), then the second order of the
        same customer becomes RTO (its return, requested at minute 30 while it was in transit,
        arrived before its fulfillment). Both triggers are evaluated at their own times, whatever
        the delivery order: the RTO at 30 (the second order no longer counts: bronze), then the
        delivery at 40 (still bronze: no entry)."""
        customer, first, second, f1, f2 = (next_id() for _ in range(5))
        setup = [
            order(first, customer, "8000.00"),
            order(second, customer, "4000.00", gateways=COD),
            Delivery.of("returns/request", return_payload(next_id(), second), triggered_at=at(30)),
            shipped(f1, first, "in_transit", 2),
        ]
        run = [event(f1, first, "delivered", 40), shipped(f2, second, "in_transit", 20)]
        for shop, batch in ((SHOP, 1), (OTHER_SHOP, 100)):
            await apply_in(sessionmaker, settings, setup, shop, batch=batch)
            await apply_in(sessionmaker, settings, run, shop, batch=batch)

        one_by_one, batched = await state(sessionmaker, SHOP), await state(sessionmaker, OTHER_SHOP)
        assert batched == one_by_one
        assert one_by_one["tracking"][second][0] == "rto_initiated"
        assert [(h["to_tier"], h["ltv"], h["reason"]) for h in one_by_one["history"]] == [
            ("bronze", Decimal("8000.00"), "rto"),
        ]


class TestSetBasedRuns:
    async def test_a_run_of_new_orders_takes_a_fixed_number_of_statements(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customer = next_id()
        few = [order(next_id(), customer, "100.00") for _ in range(3)]
        many = [order(next_id(), customer, "100.00") for _ in range(10)]  # one batch on SQLite too
        counts = []
        for deliveries in (few, many):
            await helpers.enqueue_many(sessionmaker, deliveries)
            with count_statements(sessionmaker) as counted:
                await helpers.drain(sessionmaker, settings)
            counts.append(counted[0])
        assert len(await helpers.orders(sessionmaker)) == 13
        # one by one it would be five statements or more per order; as a set it does not grow
        assert counts[1] == counts[0], counts
        assert counts[1] < 25, counts

    async def test_a_run_of_carrier_events_takes_a_fixed_number_of_statements(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customer = next_id()
        shipments = [(next_id(), next_id()) for _ in range(13)]
        setup = [order(order_id, customer, "100.00") for order_id, _ in shipments]
        setup += [shipped(fid, order_id, "confirmed", 1) for order_id, fid in shipments]
        await helpers.apply(sessionmaker, settings, setup)
        counts = []
        for part in (shipments[:3], shipments[3:]):
            await helpers.enqueue_many(sessionmaker, [event(fid, oid, "in_transit", 5) for oid, fid in part])
            with count_statements(sessionmaker) as counted:
                await helpers.drain(sessionmaker, settings)
            counts.append(counted[0])
        tracking = {oid: row["tracking_status"] for oid, row in (await helpers.orders(sessionmaker)).items()}
        assert set(tracking.values()) == {"in_transit"}
        assert counts[1] == counts[0], counts


class TestDeferredFigures:
    async def test_a_customer_who_gains_and_loses_an_order_in_one_batch_is_zeroed(
        self, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        customer_id, order_id = next_id(), next_id()
        await helpers.apply(sessionmaker, settings, [order(order_id, customer_id, "700.00")])
        assert (await helpers.customer_stats(sessionmaker))[customer_id]["order_count"] == 1

        await helpers.apply(
            sessionmaker,
            settings,
            [
                order(order_id, customer_id, "800.00", updated=3),
                Delivery.of("orders/delete", {"id": order_id}),
            ],
        )
        row = (await helpers.customer_stats(sessionmaker))[customer_id]
        assert (row["order_count"], row["ltv"]) == (0, 0)

    async def test_settle_empties_the_collector(self, sessionmaker: Sessionmaker) -> None:
        deferred = DeferredFigures()
        assert not deferred
        shop_id = await helpers.shop_id(sessionmaker)
        async with session_scope(sessionmaker) as session:
            deferred.owe(shop_id, ShopSettings(), [next_id()])
            assert deferred
            assert await deferred.settle(session) == []
        assert not deferred
