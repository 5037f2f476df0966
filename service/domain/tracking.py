"""Order tracking status, including return-to-origin (SPEC §4.2).

The status is *derived* from stored facts (fulfillments, their events, returns, the order's tags,
a status set through the API), never accumulated from the order deliveries happened to arrive
in. So any permutation of the same deliveries gives the same status.

Rules, in the order they are applied:

1. A fulfillment's status is its latest observation: ``shipment_status`` as of the fulfillment's
   ``updated_at`` and each event's ``status`` as of its ``happened_at`` (an event wins a tie).
   Cancelled fulfillments are ignored.
2. Forward status: ``delivered`` when every live fulfillment is delivered; otherwise the status
   of the most recently updated live fulfillment that is not delivered; ``None`` when there is no
   live fulfillment. A status set through the API counts as one more observation.
3. RTO triggers, each with a start time: an RTO tag on the order (from ``rtoTags``; start = the
   ``updated_at`` of the first snapshot carrying it); a return requested or approved while the
   order was fulfilled but not delivered (start = the request's ``X-Shopify-Triggered-At``; a
   declined return is no trigger); an RTO status set through the API.
4. Under RTO the status is the furthest of: each trigger's own state, ``rto_delivered`` for a
   closed triggering return, and every observation after the RTO began mapped into the RTO
   sequence (``in_transit``/``out_for_delivery`` → ``rto_in_transit``, ``delivered`` →
   ``rto_delivered``). Taking the furthest keeps the sequence forward-only; removing the tag or
   declining the return that was the only trigger reverts the order to its forward status.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import Fulfillment, FulfillmentEvent, Order, Return

orders = Order.__table__  # type: ignore[attr-defined]
fulfillments = Fulfillment.__table__  # type: ignore[attr-defined]
fulfillment_events = FulfillmentEvent.__table__  # type: ignore[attr-defined]
returns = Return.__table__  # type: ignore[attr-defined]

FORWARD_STATES = (
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
RTO_STATES = ("rto_initiated", "rto_in_transit", "rto_delivered")
ALL_STATES = FORWARD_STATES + RTO_STATES
RTO_RANK = {state: rank for rank, state in enumerate(RTO_STATES)}
DELIVERED = "delivered"
CANCELLED = "cancelled"

_RTO_MOVEMENT = {
    "in_transit": "rto_in_transit",
    "out_for_delivery": "rto_in_transit",
    "delivered": "rto_delivered",
}


def known_or_verbatim(status: str) -> str:
    """A carrier status in tierline's (lower-case) spelling when known, else exactly as sent."""
    lowered = status.strip().lower()
    return lowered if lowered in ALL_STATES else status


def is_rto(status: str | None) -> bool:
    return status in RTO_RANK


@dataclass(frozen=True, slots=True)
class Observation:
    at: datetime | None
    status: str
    #: Events outrank a fulfillment's own ``shipment_status`` at the same instant.
    priority: int = 0

    def key(self) -> tuple[int, datetime | str, int]:
        # Undated observations sort before dated ones.
        return (0, "", self.priority) if self.at is None else (1, self.at, self.priority)


@dataclass(frozen=True, slots=True)
class FulfillmentFacts:
    id: int
    status: str | None
    shipment_status: str | None
    created_at: datetime | None
    updated_at: datetime | None
    events: tuple[Observation, ...] = ()

    @property
    def live(self) -> bool:
        return (self.status or "").lower() != CANCELLED

    def observations(self, as_of: datetime | None = None) -> list[Observation]:
        found = list(self.events)
        if self.shipment_status:
            found.append(Observation(self.updated_at or self.created_at, self.shipment_status, 0))
        if as_of is not None:
            found = [o for o in found if o.at is not None and o.at <= as_of]
        return found

    def current(self, as_of: datetime | None = None) -> Observation | None:
        found = self.observations(as_of)
        return max(found, key=Observation.key) if found else None

    def last_touched(self, as_of: datetime | None = None) -> tuple[int, datetime | str, int]:
        current = self.current(as_of)
        touched = [o.key() for o in ([current] if current else [])]
        stamp = self.updated_at or self.created_at
        if stamp is not None and (as_of is None or stamp <= as_of):
            touched.append((1, stamp, -1))
        return max(touched) if touched else (0, "", -1)


@dataclass(frozen=True, slots=True)
class ReturnFacts:
    id: int
    requested_at: datetime | None
    approved_at: datetime | None
    declined_at: datetime | None
    closed_at: datetime | None

    @property
    def started_at(self) -> datetime | None:
        stamps = [t for t in (self.requested_at, self.approved_at) if t is not None]
        return min(stamps) if stamps else None


@dataclass(frozen=True, slots=True)
class OrderFacts:
    fulfillments: tuple[FulfillmentFacts, ...] = ()
    returns: tuple[ReturnFacts, ...] = ()
    #: RTO state named by the order's tags, and since when the tag has been there.
    tag_state: str | None = None
    tag_since: datetime | None = None
    #: Latest forward status set through the API, and when.
    manual_status: str | None = None
    manual_at: datetime | None = None
    #: Furthest RTO state set through the API, and when the first was set.
    manual_rto_status: str | None = None
    manual_rto_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TrackingResult:
    status: str | None
    delivered_at: datetime | None = None
    rto_source: str | None = None


def tag_rto_state(tags: str, rto_tags: Mapping[str, str]) -> str | None:
    """The furthest RTO state named by a comma-separated tag list (case-insensitive)."""
    states = [rto_tags[t] for t in (p.strip().lower() for p in tags.split(",")) if t in rto_tags]
    states = [s for s in states if s in RTO_RANK]
    return max(states, key=RTO_RANK.__getitem__) if states else None


def log_time(moment: datetime) -> str:
    """A sortable UTC text form of a time, for the order's tag log."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tag_since(log: list[list[str]] | None, rto_tags: Mapping[str, str]) -> datetime | None:
    """When the current run of snapshots carrying an RTO tag began, from the order's tag log:
    the earliest tagged snapshot after the latest untagged one (None if the latest is untagged)."""
    since: str | None = None
    for when, tags in sorted(log or [], reverse=True):
        if tag_rto_state(tags, rto_tags) is None:
            break
        since = when
    return datetime.strptime(since, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) if since else None


def _before(moment: datetime | None, as_of: datetime | None) -> bool:
    return as_of is None or (moment is not None and moment <= as_of)


def _existed(fulfillment: FulfillmentFacts, as_of: datetime | None) -> bool:
    """Whether a fulfillment existed at ``as_of`` (undated ones are taken to have existed)."""
    born = fulfillment.created_at or fulfillment.updated_at
    return as_of is None or born is None or born <= as_of


def forward_status(facts: OrderFacts, as_of: datetime | None = None) -> tuple[str | None, datetime | None]:
    """Rule 2: the order's forward status (and when it was delivered), optionally as of a time."""
    live = [f for f in facts.fulfillments if f.live and _existed(f, as_of)]
    manual: Observation | None = None
    if facts.manual_status in FORWARD_STATES and _before(facts.manual_at, as_of):
        manual = Observation(facts.manual_at, facts.manual_status, 2)
    currents = [(f, f.current(as_of)) for f in live]
    status: str | None
    delivered_at: datetime | None = None
    if currents and all(c is not None and c.status == DELIVERED for _, c in currents):
        status = DELIVERED
        stamps = [c.at for _, c in currents if c is not None and c.at is not None]
        delivered_at = max(stamps) if stamps else None
        latest_key = max(c.key() for _, c in currents if c is not None)
    elif currents:
        pending = [(f, c) for f, c in currents if c is None or c.status != DELIVERED]
        chosen, current = max(pending, key=lambda pair: pair[0].last_touched(as_of))
        status = current.status if current is not None else None
        latest_key = chosen.last_touched(as_of)
    else:
        status, latest_key = None, (0, "", -1)
    if manual is not None and manual.key() >= latest_key:
        status = manual.status
        delivered_at = manual.at if manual.status == DELIVERED else None
    return status, delivered_at


def derive(facts: OrderFacts) -> TrackingResult:
    """Rules 1 to 4: the order's tracking status, its delivery time and what started an RTO."""
    status, delivered_at = forward_status(facts)
    triggers: list[tuple[datetime | None, str, str]] = []  # (start, state, source)
    if facts.tag_state is not None:
        triggers.append((facts.tag_since, facts.tag_state, "tag"))
    for ret in facts.returns:
        start = ret.started_at
        if start is None or ret.declined_at is not None:
            continue
        had_live = any(f.live and _existed(f, start) for f in facts.fulfillments)
        state_then, _ = forward_status(facts, as_of=start)
        if not had_live or state_then == DELIVERED:
            continue  # not shipped yet, or a customer return after delivery
        triggers.append((start, "rto_delivered" if ret.closed_at is not None else "rto_initiated", "return"))
    if facts.manual_rto_status in RTO_RANK:
        triggers.append((facts.manual_rto_at, facts.manual_rto_status, "api"))
    if not triggers:
        return TrackingResult(status=status, delivered_at=delivered_at)

    dated = [t for t in triggers if t[0] is not None]
    start_at = min(t[0] for t in dated) if dated else None  # type: ignore[type-var]
    first = min(triggers, key=lambda t: (t[0] is None, t[0] or start_at, t[2]))
    states = [t[1] for t in triggers]
    movements: Iterable[Observation] = (o for f in facts.fulfillments if f.live for o in f.observations())
    for obs in movements:
        mapped = _RTO_MOVEMENT.get(obs.status)
        if mapped and obs.at is not None and (start_at is None or obs.at > start_at):
            states.append(mapped)
    manual_at = facts.manual_at
    if (
        facts.manual_status in _RTO_MOVEMENT
        and manual_at is not None
        and (start_at is None or manual_at > start_at)
    ):
        states.append(_RTO_MOVEMENT[facts.manual_status])
    return TrackingResult(status=max(states, key=RTO_RANK.__getitem__), rto_source=first[2])


# --- applying the rules to stored orders ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusChange:
    """An order whose tracking status was re-derived (``before`` may equal ``after``)."""

    order_id: int
    customer_id: int | None
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


TRACKED_COLUMNS = (
    orders.c.id,
    orders.c.customer_id,
    orders.c.tags,
    orders.c.updated_at,
    orders.c.rto_tag_log,
    orders.c.manual_status,
    orders.c.manual_status_at,
    orders.c.manual_rto_status,
    orders.c.manual_rto_at,
    orders.c.tracking_status,
    orders.c.delivered_at,
    orders.c.rto_source,
)


@dataclass(frozen=True, slots=True)
class TrackedOrder:
    """The order columns that tracking reads and writes."""

    id: int
    customer_id: int | None
    tags: str
    updated_at: datetime | None
    rto_tag_log: list[list[str]] | None
    manual_status: str | None
    manual_status_at: datetime | None
    manual_rto_status: str | None
    manual_rto_at: datetime | None
    tracking_status: str | None
    delivered_at: datetime | None
    rto_source: str | None

    @classmethod
    def of(cls, row: Any) -> TrackedOrder:
        return cls(**row._mapping)


async def refresh(
    session: AsyncSession,
    shop_id: int,
    order_ids: Iterable[int],
    rto_tags: Mapping[str, str],
    *,
    rows: list[TrackedOrder] | None = None,
    has_facts: bool | None = None,
) -> list[StatusChange]:
    """Re-derive the tracking status of these orders from their stored facts; write changes.

    ``rows`` (the orders as just written) and ``has_facts`` (whether fulfillments or returns may
    exist) spare queries when the caller knows them.
    """
    ids = sorted(set(order_ids))
    if not ids:
        return []
    if rows is None:
        selected = await session.execute(
            sa.select(*TRACKED_COLUMNS).where(orders.c.shop_id == shop_id, orders.c.id.in_(ids))
        )
        rows = [TrackedOrder.of(r) for r in selected]
    if not rows:
        return []
    found = [r.id for r in rows]
    facts = await _load_facts(session, shop_id, found) if has_facts is not False else {}
    changes: list[StatusChange] = []
    updates: list[dict[str, Any]] = []
    for row in rows:
        fulfillment_facts, return_facts = facts.get(row.id, ((), ()))
        tag_state = tag_rto_state(row.tags or "", rto_tags)
        result = derive(
            OrderFacts(
                fulfillments=fulfillment_facts,
                returns=return_facts,
                tag_state=tag_state,
                tag_since=(tag_since(row.rto_tag_log, rto_tags) or row.updated_at) if tag_state else None,
                manual_status=row.manual_status,
                manual_at=row.manual_status_at,
                manual_rto_status=row.manual_rto_status,
                manual_rto_at=row.manual_rto_at,
            )
        )
        current = (row.tracking_status, row.delivered_at, row.rto_source)
        if (result.status, result.delivered_at, result.rto_source) != current:
            updates.append(
                {
                    "b_shop_id": shop_id,
                    "b_id": row.id,
                    "b_status": result.status,
                    "b_delivered_at": result.delivered_at,
                    "b_rto_source": result.rto_source,
                }
            )
        changes.append(StatusChange(row.id, row.customer_id, row.tracking_status, result.status))
    if updates:  # one executemany for every order whose status moved
        await session.execute(_update_statement(), updates)
    return changes


@functools.cache
def _update_statement() -> Any:
    return (
        sa.update(orders)
        .where(orders.c.shop_id == sa.bindparam("b_shop_id"), orders.c.id == sa.bindparam("b_id"))
        .values(
            tracking_status=sa.bindparam("b_status", type_=orders.c.tracking_status.type),
            delivered_at=sa.bindparam("b_delivered_at", type_=orders.c.delivered_at.type),
            rto_source=sa.bindparam("b_rto_source", type_=orders.c.rto_source.type),
        )
    )


async def _load_facts(
    session: AsyncSession, shop_id: int, order_ids: list[int]
) -> dict[int, tuple[tuple[FulfillmentFacts, ...], tuple[ReturnFacts, ...]]]:
    probe = sa.union(
        sa.select(fulfillments.c.order_id).where(
            fulfillments.c.shop_id == shop_id, fulfillments.c.order_id.in_(order_ids)
        ),
        sa.select(returns.c.order_id).where(returns.c.shop_id == shop_id, returns.c.order_id.in_(order_ids)),
    )
    order_ids = [int(i) for i in (await session.scalars(probe)).all()]
    if not order_ids:
        return {}  # the common case for a new order: one query instead of three
    events: dict[int, list[Observation]] = {}
    for fid, status, happened_at in await session.execute(
        sa.select(
            fulfillment_events.c.fulfillment_id, fulfillment_events.c.status, fulfillment_events.c.happened_at
        ).where(fulfillment_events.c.shop_id == shop_id, fulfillment_events.c.order_id.in_(order_ids))
    ):
        events.setdefault(int(fid), []).append(Observation(happened_at, status, 1))
    by_order: dict[int, list[FulfillmentFacts]] = {}
    for row in await session.execute(
        sa.select(
            fulfillments.c.id,
            fulfillments.c.order_id,
            fulfillments.c.status,
            fulfillments.c.shipment_status,
            fulfillments.c.created_at,
            fulfillments.c.updated_at,
        ).where(fulfillments.c.shop_id == shop_id, fulfillments.c.order_id.in_(order_ids))
    ):
        by_order.setdefault(int(row.order_id), []).append(
            FulfillmentFacts(
                id=int(row.id),
                status=row.status,
                shipment_status=row.shipment_status,
                created_at=row.created_at,
                updated_at=row.updated_at,
                events=tuple(events.get(int(row.id), ())),
            )
        )
    returns_by_order: dict[int, list[ReturnFacts]] = {}
    for row in await session.execute(
        sa.select(
            returns.c.id,
            returns.c.order_id,
            returns.c.requested_at,
            returns.c.approved_at,
            returns.c.declined_at,
            returns.c.closed_at,
        ).where(returns.c.shop_id == shop_id, returns.c.order_id.in_(order_ids))
    ):
        returns_by_order.setdefault(int(row.order_id), []).append(
            ReturnFacts(int(row.id), row.requested_at, row.approved_at, row.declined_at, row.closed_at)
        )
    return {
        oid: (tuple(by_order.get(oid, ())), tuple(returns_by_order.get(oid, ())))
        for oid in set(by_order) | set(returns_by_order)
    }
