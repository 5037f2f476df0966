"""docs/domain.md tracking status, as pure functions of stored facts (no database).

``derive(OrderFacts)`` turns fulfillments (with their ``shipment_status`` and carrier events),
returns, the RTO state named by the order's tags and a status set through the API into the
order's tracking status. Each rule of docs/domain.md ("Tracking status") is a row of a table
below; times are minutes after ``tests.support.payloads.BASE_TIME`` (``at(m)``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pytest

from service.domain.settings import DEFAULT_RTO_TAGS
from service.domain.tracking import (
    ALL_STATES,
    FORWARD_STATES,
    RTO_STATES,
    FulfillmentFacts,
    Observation,
    OrderFacts,
    ReturnFacts,
    TrackingResult,
    derive,
    forward_status,
    is_rto,
    tag_rto_state,
    timeline,
)
from tests.support.payloads import at

_fulfillment_ids = itertools.count(1)
_return_ids = itertools.count(1)


def ev(minutes: float, status: str) -> Observation:
    """A carrier event (``fulfillment_events/create``) that happened at ``at(minutes)``."""
    return Observation(at(minutes), status, 1)


def ful(
    shipment: str | None = None,
    *,
    updated: float = 0,
    created: float | None = None,
    events: Sequence[Observation] = (),
    status: str = "success",
) -> FulfillmentFacts:
    """A fulfillment whose ``shipment_status`` is as of ``at(updated)``."""
    return FulfillmentFacts(
        id=next(_fulfillment_ids),
        status=status,
        shipment_status=shipment,
        created_at=at(created if created is not None else min(updated, 0)),
        updated_at=at(updated),
        events=tuple(events),
    )


def ret(
    requested: float | None = None,
    *,
    approved: float | None = None,
    declined: float | None = None,
    closed: float | None = None,
) -> ReturnFacts:
    """A return whose steps were triggered at these minutes (None: step never happened)."""

    def moment(minutes: float | None) -> datetime | None:
        return None if minutes is None else at(minutes)

    return ReturnFacts(
        next(_return_ids), moment(requested), moment(approved), moment(declined), moment(closed)
    )


def facts(
    *fulfillments: FulfillmentFacts,
    returns: Sequence[ReturnFacts] = (),
    tag: str | None = None,
    tag_since: float | None = None,
    manual: str | None = None,
    manual_at: float | None = None,
    manual_rto: str | None = None,
    manual_rto_at: float | None = None,
) -> OrderFacts:
    def moment(minutes: float | None) -> datetime | None:
        return None if minutes is None else at(minutes)

    manual_log = [(moment(manual_at), manual)] if manual is not None else []
    if manual_rto is not None:
        manual_log.append((moment(manual_rto_at), manual_rto))
    return OrderFacts(
        fulfillments=tuple(fulfillments),
        returns=tuple(returns),
        tags=((moment(tag_since), tag),) if tag is not None else (),
        manual=tuple(sorted(manual_log, key=lambda e: (e[0] is not None, e[0] or at(0)))),
    )


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    facts: OrderFacts
    status: str | None

    def param(self) -> object:
        return pytest.param(self.facts, self.status, id=self.id)


def table(*cases: Case) -> list[object]:
    return [c.param() for c in cases]


class TestStates:
    def test_the_value_sets_of_the_spec(self) -> None:
        assert FORWARD_STATES == (
            "label_printed",
            "label_purchased",
            "confirmed",
            "carrier_picked_up",
            "picked_up",
            "in_transit",
            "out_for_delivery",
            "attempted_delivery",
            "ready_for_pickup",
            "delayed",
            "failure",
            "delivered",
        )
        assert RTO_STATES == ("rto_initiated", "rto_in_transit", "rto_delivered")
        assert set(ALL_STATES) == set(FORWARD_STATES) | set(RTO_STATES)

    @pytest.mark.parametrize(
        ("status", "expected"),
        [(None, False), ("delivered", False), ("in_transit", False), ("weird", False)]
        + [(s, True) for s in RTO_STATES],
    )
    def test_is_rto(self, status: str | None, expected: bool) -> None:
        assert is_rto(status) is expected


# --- forward status (no RTO) ---------------------------------------------------------------------

FORWARD = table(
    Case("no fulfillment: null", facts(), None),
    Case("a fulfillment without any status: null", facts(ful(None)), None),
    Case("shipment_status only", facts(ful("in_transit", updated=10)), "in_transit"),
    Case("label states too", facts(ful("label_printed", updated=10)), "label_printed"),
    Case(
        "an event newer than shipment_status wins",
        facts(ful("in_transit", updated=10, events=[ev(20, "out_for_delivery")])),
        "out_for_delivery",
    ),
    Case(
        "an event older than shipment_status loses",
        facts(ful("out_for_delivery", updated=20, events=[ev(10, "in_transit")])),
        "out_for_delivery",
    ),
    Case(
        "events without any shipment_status",
        facts(ful(None, updated=0, events=[ev(10, "confirmed"), ev(20, "in_transit")])),
        "in_transit",
    ),
    Case(
        "latest happened_at wins, not the last in the list",
        facts(ful(None, events=[ev(30, "delivered"), ev(10, "in_transit"), ev(20, "out_for_delivery")])),
        "delivered",
    ),
    Case(
        "an event at the same instant as shipment_status wins (documented tie-break)",
        facts(ful("confirmed", updated=10, events=[ev(10, "in_transit")])),
        "in_transit",
    ),
    Case(
        "unknown carrier status stored verbatim",
        facts(ful("in_transit", updated=10, events=[ev(20, "Held_At_Customs")])),
        "Held_At_Customs",
    ),
    Case("unknown shipment_status verbatim", facts(ful("lost_by_carrier", updated=5)), "lost_by_carrier"),
    Case(
        "multi: all delivered → delivered",
        facts(ful("delivered", updated=10), ful(None, events=[ev(40, "delivered")])),
        "delivered",
    ),
    Case(
        "multi: one delivered + one in_transit → in_transit",
        facts(ful("delivered", updated=50), ful("in_transit", updated=10)),
        "in_transit",
    ),
    Case(
        "multi: the most recently updated non-delivered one wins (second)",
        facts(
            ful("in_transit", updated=10), ful("out_for_delivery", updated=20), ful("delivered", updated=30)
        ),
        "out_for_delivery",
    ),
    Case(
        "multi: the most recently updated non-delivered one wins (first)",
        facts(
            ful("in_transit", updated=20), ful("out_for_delivery", updated=10), ful("delivered", updated=30)
        ),
        "in_transit",
    ),
    Case(
        "multi: an event makes a fulfillment the most recently updated",
        facts(
            ful("confirmed", updated=10, events=[ev(50, "attempted_delivery")]), ful("in_transit", updated=20)
        ),
        "attempted_delivery",
    ),
    Case(
        "cancelled in_transit + delivered → delivered",
        facts(ful("in_transit", updated=50, status="cancelled"), ful("delivered", updated=10)),
        "delivered",
    ),
    Case(
        "cancelled fulfillment ignored even when newest",
        facts(ful("failure", updated=50, status="cancelled"), ful("in_transit", updated=10)),
        "in_transit",
    ),
    Case(
        "only a cancelled fulfillment: null", facts(ful("in_transit", updated=10, status="cancelled")), None
    ),
)


class TestForwardStatus:
    @pytest.mark.parametrize(("order", "expected"), FORWARD)
    def test_derive(self, order: OrderFacts, expected: str | None) -> None:
        assert derive(order).status == expected
        assert derive(order).rto_source is None

    @pytest.mark.parametrize(("order", "expected"), FORWARD)
    def test_forward_status_agrees(self, order: OrderFacts, expected: str | None) -> None:
        assert forward_status(order)[0] == expected

    @pytest.mark.parametrize(
        ("events", "expected"),
        [
            pytest.param(
                [ev(10, "in_transit"), ev(20, "out_for_delivery"), ev(30, "delivered")],
                "delivered",
                id="ends delivered",
            ),
            pytest.param(
                [ev(10, "in_transit"), ev(20, "delivered"), ev(30, "out_for_delivery")],
                "out_for_delivery",
                id="ends out_for_delivery",
            ),
        ],
    )
    def test_events_apply_in_happened_at_order_whatever_the_list_order(
        self, events: list[Observation], expected: str
    ) -> None:
        fulfillment = ful("confirmed", updated=5)
        for permutation in itertools.permutations(events):
            order = facts(
                FulfillmentFacts(
                    fulfillment.id,
                    fulfillment.status,
                    fulfillment.shipment_status,
                    fulfillment.created_at,
                    fulfillment.updated_at,
                    tuple(permutation),
                )
            )
            assert derive(order).status == expected, permutation

    def test_delivered_at_is_the_latest_delivery(self) -> None:
        order = facts(
            ful("delivered", updated=10),
            ful(None, events=[ev(40, "delivered")]),
            ful("delivered", updated=25),
        )
        assert derive(order) == TrackingResult(status="delivered", delivered_at=at(40), rto_source=None)

    def test_delivered_at_is_none_unless_delivered(self) -> None:
        assert derive(facts(ful("delivered", updated=10), ful("in_transit", updated=5))).delivered_at is None

    def test_fulfillment_order_does_not_matter(self) -> None:
        parts = [
            ful("in_transit", updated=10),
            ful("out_for_delivery", updated=20),
            ful("delivered", updated=30),
        ]
        results = {derive(facts(*p)) for p in itertools.permutations(parts)}
        assert results == {TrackingResult("out_for_delivery")}

    @pytest.mark.parametrize(
        ("as_of", "expected"),
        [(5, None), (10, "in_transit"), (25, "out_for_delivery"), (35, "delivered")],
    )
    def test_forward_status_as_of_a_time(self, as_of: float, expected: str | None) -> None:
        order = facts(
            ful(
                "in_transit", updated=10, created=10, events=[ev(20, "out_for_delivery"), ev(30, "delivered")]
            )
        )
        assert forward_status(order, as_of=at(as_of))[0] == expected

    @pytest.mark.parametrize(
        ("order", "expected"),
        [
            pytest.param(
                facts(manual="in_transit", manual_at=10), "in_transit", id="API status, no fulfillment"
            ),
            pytest.param(
                facts(ful("in_transit", updated=10), manual="delivered", manual_at=20),
                "delivered",
                id="API status newer than the carrier",
            ),
            pytest.param(
                facts(ful("out_for_delivery", updated=30), manual="in_transit", manual_at=20),
                "out_for_delivery",
                id="carrier newer than the API status",
            ),
        ],
    )
    def test_a_status_set_through_the_api_is_one_more_observation(
        self, order: OrderFacts, expected: str
    ) -> None:
        assert derive(order).status == expected


# --- RTO tags ------------------------------------------------------------------------------------


class TestTagRtoState:
    @pytest.mark.parametrize(
        ("tags", "expected"),
        [
            ("", None),
            ("vip, festive", None),
            ("RTO", "rto_initiated"),
            ("rto", "rto_initiated"),
            ("Rto-Initiated", "rto_initiated"),
            ("vip,  rto-in-transit ", "rto_in_transit"),
            ("RTO-DELIVERED", "rto_delivered"),
            ("rto, rto-delivered, rto-in-transit", "rto_delivered"),
            ("rtox, not-rto, rto in transit", None),
        ],
    )
    def test_default_tags(self, tags: str, expected: str | None) -> None:
        assert tag_rto_state(tags, DEFAULT_RTO_TAGS) == expected

    def test_custom_map(self) -> None:
        custom = {"returned": "rto_delivered", "bounce": "rto_in_transit"}
        assert tag_rto_state("Bounce", custom) == "rto_in_transit"
        assert tag_rto_state("rto", custom) is None


# --- RTO -----------------------------------------------------------------------------------------

SHIPPED = ful("in_transit", updated=10)

RTO = table(
    *(
        Case(f"tag → {state}", facts(SHIPPED, tag=state, tag_since=20), state)
        for state in ("rto_initiated", "rto_in_transit", "rto_delivered")
    ),
    Case("tag on an unshipped order", facts(tag="rto_initiated", tag_since=5), "rto_initiated"),
    Case(
        "return requested, fulfilled not delivered → rto_initiated",
        facts(SHIPPED, returns=[ret(20)]),
        "rto_initiated",
    ),
    Case("return approved (no request seen)", facts(SHIPPED, returns=[ret(approved=20)]), "rto_initiated"),
    Case(
        "return on a fulfillment that has no status yet",
        facts(ful(None, updated=10), returns=[ret(20)]),
        "rto_initiated",
    ),
    Case(
        "return on a partially delivered order",
        facts(ful("delivered", updated=5), ful("in_transit", updated=10), returns=[ret(20)]),
        "rto_initiated",
    ),
    Case(
        "after the return, in_transit → rto_in_transit",
        facts(ful("in_transit", updated=10, events=[ev(30, "in_transit")]), returns=[ret(20)]),
        "rto_in_transit",
    ),
    Case(
        "after the return, out_for_delivery → rto_in_transit",
        facts(ful("in_transit", updated=10, events=[ev(30, "out_for_delivery")]), returns=[ret(20)]),
        "rto_in_transit",
    ),
    Case(
        "after the return, delivered → rto_delivered",
        facts(
            ful("in_transit", updated=10, events=[ev(30, "in_transit"), ev(40, "delivered")]),
            returns=[ret(20)],
        ),
        "rto_delivered",
    ),
    Case("returns/close → rto_delivered", facts(SHIPPED, returns=[ret(20, closed=50)]), "rto_delivered"),
    Case(
        "a shipment_status update after the return maps too",
        facts(ful("out_for_delivery", updated=30), returns=[ret(20)]),
        "rto_in_transit",
    ),
    Case(
        "events before the RTO start don't map",
        facts(ful("in_transit", updated=10, events=[ev(15, "out_for_delivery")]), returns=[ret(20)]),
        "rto_initiated",
    ),
    Case(
        "events before the tag don't map",
        facts(
            ful("in_transit", updated=10, events=[ev(15, "out_for_delivery")]),
            tag="rto_initiated",
            tag_since=20,
        ),
        "rto_initiated",
    ),
    Case(
        "statuses that are no movement don't map",
        facts(
            ful("in_transit", updated=10, events=[ev(30, "attempted_delivery"), ev(40, "failure")]),
            returns=[ret(20)],
        ),
        "rto_initiated",
    ),
    Case(
        "return on a delivered order: customer return",
        facts(ful("delivered", updated=10), returns=[ret(20)]),
        "delivered",
    ),
    Case(
        "closed return on a delivered order: still delivered",
        facts(ful("delivered", updated=10), returns=[ret(20, closed=60)]),
        "delivered",
    ),
    Case("return on an unfulfilled order: not RTO", facts(returns=[ret(20)]), None),
    Case(
        "return before the first fulfillment existed: not RTO",
        facts(ful("in_transit", updated=30, created=30), returns=[ret(20)]),
        "in_transit",
    ),
    Case(
        "return when only a cancelled fulfillment existed: not RTO",
        facts(ful("in_transit", updated=10, status="cancelled"), returns=[ret(20)]),
        None,
    ),
    Case(
        "forward only: in_transit event after rto_delivered (tag)",
        facts(
            ful("in_transit", updated=10, events=[ev(40, "in_transit")]), tag="rto_delivered", tag_since=20
        ),
        "rto_delivered",
    ),
    Case(
        "forward only: in_transit event after rto_delivered (event)",
        facts(
            ful("in_transit", updated=10, events=[ev(30, "delivered"), ev(40, "in_transit")]),
            returns=[ret(20)],
        ),
        "rto_delivered",
    ),
    Case(
        "forward only: a closed return then an in_transit event",
        facts(ful("in_transit", updated=10, events=[ev(60, "in_transit")]), returns=[ret(20, closed=50)]),
        "rto_delivered",
    ),
    Case(
        "forward only: tag rto_initiated after rto_in_transit movement",
        facts(
            ful("in_transit", updated=10, events=[ev(30, "in_transit")]),
            returns=[ret(20)],
            tag="rto_initiated",
            tag_since=40,
        ),
        "rto_in_transit",
    ),
    Case(
        "declined return that started it: forward status",
        facts(SHIPPED, returns=[ret(20, declined=25)]),
        "in_transit",
    ),
    Case(
        "declined return: later movement is forward movement",
        facts(ful("in_transit", updated=10, events=[ev(30, "delivered")]), returns=[ret(20, declined=25)]),
        "delivered",
    ),
    Case(
        "declined return, but a tag still triggers",
        facts(SHIPPED, returns=[ret(20, declined=25)], tag="rto_initiated", tag_since=15),
        "rto_initiated",
    ),
    Case("tag removed (no tag state any more): forward status", facts(SHIPPED), "in_transit"),
    Case(
        "tag removed while a return still triggers: stays RTO",
        facts(SHIPPED, returns=[ret(20)]),
        "rto_initiated",
    ),
    Case(
        "API sets rto_initiated",
        facts(SHIPPED, manual_rto="rto_initiated", manual_rto_at=30),
        "rto_initiated",
    ),
    Case("API sets rto_delivered", facts(manual_rto="rto_delivered", manual_rto_at=30), "rto_delivered"),
    Case(
        "API RTO then a delivered event → rto_delivered",
        facts(
            ful("in_transit", updated=10, events=[ev(40, "delivered")]),
            manual_rto="rto_in_transit",
            manual_rto_at=30,
        ),
        "rto_delivered",
    ),
    Case(
        "API RTO, then an API forward status → mapped into RTO",
        facts(SHIPPED, manual_rto="rto_initiated", manual_rto_at=20, manual="in_transit", manual_at=30),
        "rto_in_transit",
    ),
    Case(
        "API RTO, then an API delivered → rto_delivered",
        facts(SHIPPED, manual_rto="rto_in_transit", manual_rto_at=20, manual="delivered", manual_at=30),
        "rto_delivered",
    ),
    Case(
        "an API forward status before the API RTO does not map",
        facts(SHIPPED, manual_rto="rto_initiated", manual_rto_at=20, manual="out_for_delivery", manual_at=15),
        "rto_initiated",
    ),
    Case(
        "API forward in_transit after a tag → rto_in_transit",
        facts(SHIPPED, tag="rto_initiated", tag_since=20, manual="in_transit", manual_at=30),
        "rto_in_transit",
    ),
    Case(
        "API forward delivered after a return → rto_delivered",
        facts(SHIPPED, returns=[ret(20)], manual="delivered", manual_at=30),
        "rto_delivered",
    ),
    Case(
        "API forward status before the RTO start does not map",
        facts(SHIPPED, tag="rto_initiated", tag_since=20, manual="out_for_delivery", manual_at=15),
        "rto_initiated",
    ),
    Case(
        "API non-movement status after RTO keeps the RTO state",
        facts(SHIPPED, tag="rto_in_transit", tag_since=20, manual="confirmed", manual_at=30),
        "rto_in_transit",
    ),
)


class TestRto:
    @pytest.mark.parametrize(("order", "expected"), RTO)
    def test_derive(self, order: OrderFacts, expected: str | None) -> None:
        result = derive(order)
        assert result.status == expected
        assert (result.rto_source is not None) == is_rto(expected)
        if is_rto(expected):
            assert result.delivered_at is None

    @pytest.mark.parametrize(
        ("order", "source"),
        [
            pytest.param(facts(SHIPPED, tag="rto_initiated", tag_since=20), "tag", id="tag"),
            pytest.param(facts(SHIPPED, returns=[ret(20)]), "return", id="return"),
            pytest.param(facts(SHIPPED, manual_rto="rto_initiated", manual_rto_at=20), "api", id="api"),
            pytest.param(
                facts(SHIPPED, returns=[ret(30)], tag="rto_initiated", tag_since=20),
                "tag",
                id="earliest: tag",
            ),
            pytest.param(
                facts(SHIPPED, returns=[ret(20)], tag="rto_initiated", tag_since=30),
                "return",
                id="earliest: return",
            ),
        ],
    )
    def test_rto_source_is_the_first_trigger(self, order: OrderFacts, source: str) -> None:
        assert derive(order).rto_source == source

    def test_the_return_steps_arrive_in_any_order_of_the_facts(self) -> None:
        """A return's steps are facts with times: the same set gives the same status."""
        shipped = ful("in_transit", updated=10, events=[ev(30, "in_transit")])
        assert derive(facts(shipped, returns=[ret(20)])).status == "rto_in_transit"
        assert derive(facts(shipped, returns=[ret(20, closed=40)])).status == "rto_delivered"
        assert derive(facts(shipped, returns=[ret(20, declined=25)])).status == "in_transit"

    def test_two_returns_one_declined_one_open_stays_rto(self) -> None:
        assert derive(facts(SHIPPED, returns=[ret(20, declined=25), ret(30)])).status == "rto_initiated"

    def test_rto_sequence_never_moves_back_for_any_later_event(self) -> None:
        """Forward only: whatever single movement follows ``rto_delivered``, it stays there."""
        for status in ALL_STATES:
            order = facts(
                ful("in_transit", updated=10, events=[ev(60, status)]), returns=[ret(20, closed=50)]
            )
            assert derive(order).status == "rto_delivered", status


class TestTimeline:
    """``timeline``: the status at every instant a fact took effect; RTO only moves forward."""

    def test_a_tag_that_raised_an_rto_started_by_a_return_cannot_lower_it(self) -> None:
        # Shipped at 5; return requested at 10 (RTO begins); tag rto-in-transit at 20 raises it;
        # the tag removed at 30 must not move it back: the return still holds the RTO.
        order = OrderFacts(
            fulfillments=(ful("in_transit", updated=5),),
            returns=(ret(10),),
            tags=((at(20), "rto_in_transit"), (at(30), None)),
        )
        assert derive(order).status == "rto_initiated"  # the facts alone, at the end
        found = timeline(order)
        assert found.result.status == "rto_in_transit"
        assert found.changes == (
            (at(5), "in_transit"),
            (at(10), "rto_initiated"),
            (at(20), "rto_in_transit"),
        )

    def test_removing_the_tag_that_started_it_still_reverts(self) -> None:
        order = OrderFacts(
            fulfillments=(ful("in_transit", updated=5),),
            tags=((at(10), "rto_initiated"), (at(20), "rto_in_transit"), (at(30), None)),
        )
        found = timeline(order)
        assert found.result.status == "in_transit"
        assert found.changes == (
            (at(5), "in_transit"),
            (at(10), "rto_initiated"),
            (at(20), "rto_in_transit"),
            (at(30), "in_transit"),
        )

    def test_a_declined_return_reverts_and_a_new_one_starts_afresh(self) -> None:
        order = OrderFacts(
            fulfillments=(ful("in_transit", updated=5, events=[ev(25, "out_for_delivery")]),),
            returns=(ret(10, declined=20), ret(40)),
        )
        found = timeline(order)
        assert [s for _, s in found.changes] == [
            "in_transit",
            "rto_initiated",
            "in_transit",
            "out_for_delivery",
            "rto_initiated",
        ]
        assert found.result.status == "rto_initiated"

    def test_delivery_time_is_the_last_delivered_observation(self) -> None:
        order = OrderFacts(fulfillments=(ful("in_transit", updated=5, events=[ev(15, "delivered")]),))
        found = timeline(order)
        assert found.changes == ((at(5), "in_transit"), (at(15), "delivered"))
        assert found.result == TrackingResult("delivered", at(15), None)

    def test_no_facts_no_changes(self) -> None:
        assert timeline(OrderFacts()) == timeline(OrderFacts())
        assert timeline(OrderFacts()).changes == ()
        assert timeline(OrderFacts()).result.status is None

    def test_the_same_in_any_order_of_the_facts(self) -> None:
        returns = (ret(10), ret(12, declined=14))
        tags = ((at(20), "rto_in_transit"), (at(30), None))
        fulfillments = (
            ful("in_transit", updated=5),
            ful("in_transit", updated=6, events=[ev(35, "delivered")]),
        )
        results = {
            timeline(OrderFacts(fulfillments=f, returns=r, tags=tags))
            for f in itertools.permutations(fulfillments)
            for r in itertools.permutations(returns)
        }
        assert len(results) == 1
