"""The tier-of-record rule (docs/domain.md) as a pure function: ``tiers.history``.

No database: orders are :class:`OrderRecord` values (what an order was worth and its tracking
status over time) and shop evaluations are :class:`Evaluation` values. Every trigger is evaluated
at its own time from the orders as they stood then, so the result depends on the facts only.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from service.domain.tiers import Entry, Evaluation, OrderRecord, Rules, history, ltv_at, rules_at

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DEFAULT = Rules({"platinum": Decimal(50000), "gold": Decimal(25000), "silver": Decimal(10000)})
LOW = Rules({"platinum": Decimal(3000), "gold": Decimal(2000), "silver": Decimal(1000)})


def t(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def order(
    order_id: int,
    total: str,
    *,
    created: float = 0,
    statuses: tuple[tuple[float, str | None], ...] = (),
    cancelled: float | None = None,
    test: bool = False,
    manual: tuple[float, ...] = (),
) -> OrderRecord:
    return OrderRecord(
        id=order_id,
        created_at=t(created),
        cancelled_at=None if cancelled is None else t(cancelled),
        total=Decimal(total),
        test=test,
        statuses=tuple((t(m), s) for m, s in statuses),
        manual_at=tuple(t(m) for m in manual),
    )


def moves(entries: list[Entry]) -> list[tuple[str | None, str, str, str, int | None, float]]:
    return [
        (e.from_tier, e.to_tier, f"{e.ltv:.2f}", e.reason, e.order_id, (e.at - T0) / timedelta(minutes=1))
        for e in entries
    ]


class TestTriggers:
    def test_no_trigger_no_tier_of_record(self) -> None:
        orders = [order(1, "30000.00"), order(2, "30000.00", statuses=((5, "in_transit"),))]
        assert history(orders, [], DEFAULT, existed_at=t(0)) == []

    def test_delivery_is_evaluated_from_the_orders_that_existed_then(self) -> None:
        orders = [
            order(1, "12000.00", statuses=((10, "delivered"),)),
            order(2, "14000.00", created=15, statuses=((20, "delivered"),)),
        ]
        assert moves(history(orders, [], DEFAULT, existed_at=t(0))) == [
            (None, "silver", "12000.00", "delivered", 1, 10),
            ("silver", "gold", "26000.00", "delivered", 2, 20),
        ]

    def test_an_order_created_before_a_delivery_counts_at_it_whenever_it_arrived(self) -> None:
        late_arrival = order(2, "14000.00", created=5)
        orders = [order(1, "12000.00", statuses=((10, "delivered"),)), late_arrival]
        assert moves(history(orders, [], DEFAULT, existed_at=t(0))) == [
            (None, "gold", "26000.00", "delivered", 1, 10)
        ]

    def test_cancelled_later_counts_before_its_cancellation(self) -> None:
        orders = [
            order(1, "12000.00", statuses=((10, "delivered"),)),
            order(2, "14000.00", cancelled=30),
            order(3, "100.00", created=35, statuses=((40, "delivered"),)),
        ]
        assert moves(history(orders, [], DEFAULT, existed_at=t(0))) == [
            (None, "gold", "26000.00", "delivered", 1, 10),
            ("gold", "silver", "12100.00", "delivered", 3, 40),
        ]

    def test_entering_and_leaving_rto(self) -> None:
        orders = [
            order(1, "12000.00", statuses=((5, "in_transit"), (20, "rto_initiated"), (30, "in_transit"))),
        ]
        assert moves(history(orders, [], DEFAULT, existed_at=t(0))) == [
            (None, "bronze", "0.00", "rto", 1, 20),
            ("bronze", "silver", "12000.00", "rto", 1, 30),
        ]

    def test_an_order_first_seen_already_delivered_fires_at_its_delivery_time(self) -> None:
        # The status log holds the whole timeline however late the order arrived.
        orders = [order(1, "30000.00", statuses=((3, "in_transit"), (9, "delivered")))]
        assert moves(history(orders, [], DEFAULT, existed_at=None)) == [
            (None, "gold", "30000.00", "delivered", 1, 9)
        ]

    def test_manual_status_is_a_trigger_at_its_time(self) -> None:
        orders = [order(1, "10000.00", statuses=((7, "in_transit"),), manual=(7,))]
        assert moves(history(orders, [], DEFAULT, existed_at=t(0))) == [
            (None, "silver", "10000.00", "manual", 1, 7)
        ]

    def test_test_orders_fire_nothing_and_count_nowhere_unless_included(self) -> None:
        orders = [
            order(1, "12000.00", test=True, statuses=((10, "delivered"),)),
            order(2, "9000.00", statuses=((20, "delivered"),)),
        ]
        assert moves(history(orders, [], DEFAULT, existed_at=t(0))) == [
            (None, "bronze", "9000.00", "delivered", 2, 20)
        ]
        included = Rules(DEFAULT.thresholds, include_test_orders=True)
        assert moves(history(orders, [], included, existed_at=t(0))) == [
            (None, "silver", "21000.00", "delivered", 1, 10)
        ]

    def test_non_positive_totals_count_nowhere(self) -> None:
        orders = [order(1, "-50.00"), order(2, "0.00"), order(3, "1000.00", statuses=((5, "delivered"),))]
        assert ltv_at(orders, t(10)) == Decimal("1000.00")


class TestEvaluations:
    def test_rules_in_effect_at_each_time(self) -> None:
        change = Evaluation(t(50), "thresholds", LOW, DEFAULT)
        assert rules_at([change], t(10), LOW) == DEFAULT
        assert rules_at([change], t(50), DEFAULT) == LOW
        assert rules_at([], t(10), LOW) == LOW

    def test_a_threshold_change_applies_from_its_time_on(self) -> None:
        orders = [
            order(1, "1500.00", statuses=((10, "delivered"),)),
            order(2, "1000.00", created=60, statuses=((70, "delivered"),)),
        ]
        evaluations = [Evaluation(t(50), "thresholds", LOW, DEFAULT)]
        assert moves(history(orders, evaluations, LOW, existed_at=t(0))) == [
            (None, "bronze", "1500.00", "delivered", 1, 10),
            ("bronze", "silver", "1500.00", "thresholds", None, 50),
            ("silver", "gold", "2500.00", "delivered", 2, 70),
        ]

    def test_an_evaluation_before_the_customer_existed_does_not_apply(self) -> None:
        evaluations = [Evaluation(t(5), "batch", DEFAULT, DEFAULT)]
        orders = [order(1, "100.00", created=10)]
        assert history(orders, evaluations, DEFAULT, existed_at=t(10)) == []
        assert moves(history(orders, evaluations, DEFAULT, existed_at=t(1))) == [
            (None, "bronze", "0.00", "batch", None, 5)
        ]

    def test_including_test_orders_applies_from_its_time_on(self) -> None:
        included = Rules(DEFAULT.thresholds, include_test_orders=True)
        evaluations = [
            Evaluation(t(50), "batch", included, DEFAULT),
            Evaluation(t(60), "batch", DEFAULT, included),
        ]
        orders = [order(1, "9500.00"), order(2, "500.00", test=True)]
        assert moves(history(orders, evaluations, DEFAULT, existed_at=t(0))) == [
            (None, "silver", "10000.00", "batch", None, 50),
            ("silver", "bronze", "9500.00", "batch", None, 60),
        ]


class TestPermutationInvariance:
    @pytest.mark.parametrize("seed", range(5))
    def test_the_order_of_the_inputs_does_not_matter(self, seed: int) -> None:
        rng = random.Random(seed)
        orders = []
        for n in range(6):
            created = rng.randint(0, 50)
            statuses: list[tuple[float, str | None]] = []
            if rng.random() < 0.7:
                shipped = created + rng.randint(1, 20)
                statuses.append((shipped, "in_transit"))
                statuses.append((shipped + rng.randint(1, 20), rng.choice(["delivered", "rto_initiated"])))
            orders.append(
                order(
                    n,
                    f"{rng.choice([3000, 7000, 12000])}.00",
                    created=created,
                    statuses=tuple(statuses),
                    test=rng.random() < 0.1,
                )
            )
        evaluations = [Evaluation(t(60), "thresholds", LOW, DEFAULT)]
        expected = history(orders, evaluations, LOW, existed_at=t(0))
        assert expected  # there is something to compare
        for permuted in itertools.islice(itertools.permutations(orders), 50):
            assert history(list(permuted), evaluations, LOW, existed_at=t(0)) == expected
