"""Order tracking status, including return-to-origin (docs/domain.md).

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
5. Over time (:func:`timeline`): the rules as of every instant a fact took effect; within one RTO
   the status only moves forward, whichever source raised it.

What the batch path relies on: the status, and its timeline, are a function of the set of
stored facts, not of the order they were stored in. So storing a run of facts and refreshing
once (``webhooks.batch.apply_facts``) leaves what refreshing after each would; a rule that read
anything but the stored facts would break that, and ``tests/webhooks/test_batched.py`` (every
row, one delivery per batch against whole batches) fails.
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

    def as_of(self, as_of: datetime | None) -> ReturnFacts:
        """The return as it stood at ``as_of`` (steps after it had not happened yet)."""
        if as_of is None:
            return self
        return ReturnFacts(
            self.id,
            *(t if t is not None and t <= as_of else None for t in self._steps()),
        )

    def _steps(self) -> tuple[datetime | None, ...]:
        return (self.requested_at, self.approved_at, self.declined_at, self.closed_at)


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """Everything an order's tracking status is derived from, each fact with its own time."""

    fulfillments: tuple[FulfillmentFacts, ...] = ()
    returns: tuple[ReturnFacts, ...] = ()
    #: The RTO state the order's tags named from each snapshot on (None: no RTO tag), oldest first.
    tags: tuple[tuple[datetime | None, str | None], ...] = ()
    #: Every status set through the API, and when, oldest first.
    manual: tuple[tuple[datetime | None, str], ...] = ()

    def times(self) -> list[datetime]:
        """Every dated instant at which a fact took effect, in time order, each once."""
        found: set[datetime] = set()
        for f in self.fulfillments:
            found.update(t for t in (f.created_at, f.updated_at) if t is not None)
            found.update(o.at for o in f.events if o.at is not None)
        for r in self.returns:
            found.update(t for t in r._steps() if t is not None)
        found.update(t for t, _ in self.tags if t is not None)
        found.update(t for t, _ in self.manual if t is not None)
        return sorted(found)

    def tag_as_of(self, as_of: datetime | None) -> tuple[str | None, datetime | None]:
        """The RTO state the tags named at ``as_of``, and since when the current run of RTO tags
        has lasted (the first snapshot of the run)."""
        state: str | None = None
        since: datetime | None = None
        for when, named in self.tags:
            if not _before(when, as_of):
                break
            if named is None:
                since = None
            elif state is None:
                since = when
            state = named
        return state, since

    def manual_as_of(
        self, as_of: datetime | None
    ) -> tuple[list[tuple[datetime | None, str]], str | None, datetime | None]:
        """Forward statuses set through the API up to ``as_of``, the furthest RTO state set so
        far, and when the first RTO state was set."""
        forward = [(t, s) for t, s in self.manual if s in FORWARD_STATES and _before(t, as_of)]
        rto = [(t, s) for t, s in self.manual if s in RTO_RANK and _before(t, as_of)]
        if not rto:
            return forward, None, None
        furthest = max((s for _, s in rto), key=RTO_RANK.__getitem__)
        return forward, furthest, rto[0][0]


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
    """A sortable UTC text form of a time, for the order's logs."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_log_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def tag_states(
    log: list[list[str]] | None, tags: str, updated_at: datetime | None, rto_tags: Mapping[str, str]
) -> tuple[tuple[datetime | None, str | None], ...]:
    """The RTO state named by each snapshot in the order's tag log, where it changes, oldest
    first. Without a log, the order's current tags as of its ``updated_at``."""
    if log is None:
        state = tag_rto_state(tags, rto_tags)
        return ((updated_at, state),) if state is not None else ()
    changes: list[tuple[datetime | None, str | None]] = []
    previous: str | None = None
    for when, seen in sorted(log):
        state = tag_rto_state(seen, rto_tags)
        if state != previous:
            changes.append((parse_log_time(when), state))
            previous = state
    return tuple(changes)


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
    forward_manual, _, _ = facts.manual_as_of(as_of)
    if forward_manual:
        manual_at, manual_status = forward_manual[-1]
        manual = Observation(manual_at, manual_status, 2)
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


def derive(facts: OrderFacts, as_of: datetime | None = None) -> TrackingResult:
    """Rules 1 to 4 over the facts known at ``as_of`` (all of them by default): the order's
    tracking status then, its delivery time and what started an RTO. Not forward-only across
    time by itself: :func:`timeline` makes it so."""
    status, delivered_at = forward_status(facts, as_of)
    triggers: list[tuple[datetime | None, str, str]] = []  # (start, state, source)
    tag_state, tag_since = facts.tag_as_of(as_of)
    if tag_state is not None:
        triggers.append((tag_since, tag_state, "tag"))
    for ret in (r.as_of(as_of) for r in facts.returns):
        start = ret.started_at
        if start is None or ret.declined_at is not None:
            continue
        had_live = any(f.live and _existed(f, start) for f in facts.fulfillments)
        state_then, _ = forward_status(facts, as_of=start)
        if not had_live or state_then == DELIVERED:
            continue  # not shipped yet, or a customer return after delivery
        triggers.append((start, "rto_delivered" if ret.closed_at is not None else "rto_initiated", "return"))
    forward_manual, manual_rto, manual_rto_at = facts.manual_as_of(as_of)
    if manual_rto is not None:
        triggers.append((manual_rto_at, manual_rto, "api"))
    if not triggers:
        return TrackingResult(status=status, delivered_at=delivered_at)

    dated = [t for t in triggers if t[0] is not None]
    start_at = min(t[0] for t in dated) if dated else None  # type: ignore[type-var]
    first = min(triggers, key=lambda t: (t[0] is None, t[0] or start_at, t[2]))
    states = [t[1] for t in triggers]
    movements: Iterable[Observation] = (
        o for f in facts.fulfillments if f.live for o in f.observations(as_of)
    )
    for obs in movements:
        mapped = _RTO_MOVEMENT.get(obs.status)
        if mapped and obs.at is not None and (start_at is None or obs.at > start_at):
            states.append(mapped)
    for manual_at, manual_status in forward_manual:
        if (
            manual_status in _RTO_MOVEMENT
            and manual_at is not None
            and (start_at is None or manual_at > start_at)
        ):
            states.append(_RTO_MOVEMENT[manual_status])
    return TrackingResult(status=max(states, key=RTO_RANK.__getitem__), rto_source=first[2])


@dataclass(frozen=True, slots=True)
class Timeline:
    """An order's tracking status now, and every change of it over time (oldest first)."""

    result: TrackingResult
    changes: tuple[tuple[datetime | None, str | None], ...]


def timeline(facts: OrderFacts) -> Timeline:
    """The status at every instant a fact took effect, and now: RTO only moves forward.

    Once an RTO has begun, its status is the furthest reached since it began, whichever source
    raised it (a tag, a return, the API, a carrier movement): a later fact that would name an
    earlier RTO state (a tag removed while a return still holds the RTO) does not move it back.
    Only the end of every RTO trigger (the tag that started it removed, the return that started
    it declined) leaves RTO, back to the forward status. A function of the facts alone, so the
    same in any delivery order.
    """
    final = derive(facts)
    points = facts.times()
    steps: list[tuple[datetime | None, str | None]] = [(t, derive(facts, as_of=t).status) for t in points]
    steps.append((points[-1] if points else None, final.status))
    forward_only: list[tuple[datetime | None, str | None]] = []
    current: str | None = None
    for when, status in steps:
        if is_rto(status) and is_rto(current):
            status = max((current, status), key=lambda s: RTO_RANK[s or ""])
        forward_only.append((when, status))
        current = status
    changes: list[tuple[datetime | None, str | None]] = []
    previous: str | None = None
    for place, (when, status) in enumerate(forward_only):
        if place + 1 < len(forward_only) and forward_only[place + 1][0] == when:
            continue  # the last status at each instant counts
        if status != previous:
            changes.append((when, status))
            previous = status
    result = final if current == final.status else TrackingResult(current, None, final.rto_source)
    return Timeline(result, tuple(changes))


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
    orders.c.manual_log,
    orders.c.tracking_status,
    orders.c.delivered_at,
    orders.c.rto_source,
    orders.c.status_log,
)


@dataclass(frozen=True, slots=True)
class TrackedOrder:
    """The order columns that tracking reads and writes."""

    id: int
    customer_id: int | None
    tags: str
    updated_at: datetime | None
    rto_tag_log: list[list[str]] | None
    manual_log: list[list[str]] | None
    tracking_status: str | None
    delivered_at: datetime | None
    rto_source: str | None
    status_log: list[list[str | None]] | None

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
        found_timeline = timeline(
            OrderFacts(
                fulfillments=fulfillment_facts,
                returns=return_facts,
                tags=tag_states(row.rto_tag_log, row.tags or "", row.updated_at, rto_tags),
                manual=manual_entries(row.manual_log),
            )
        )
        result = found_timeline.result
        log = status_log(found_timeline.changes)
        current = (row.tracking_status, row.delivered_at, row.rto_source, row.status_log or None)
        if (result.status, result.delivered_at, result.rto_source, log) != current:
            updates.append(
                {
                    "b_shop_id": shop_id,
                    "b_id": row.id,
                    "b_status": result.status,
                    "b_delivered_at": result.delivered_at,
                    "b_rto_source": result.rto_source,
                    "b_status_log": log,
                    "b_last_status_at": last_status_time(found_timeline.changes, row.manual_log),
                }
            )
        changes.append(StatusChange(row.id, row.customer_id, row.tracking_status, result.status))
    if updates:  # one executemany for every order whose status moved
        await session.execute(_update_statement(), updates)
    return changes


def manual_entries(log: list[list[str]] | None) -> tuple[tuple[datetime | None, str], ...]:
    """The statuses set through the API, from the order's manual log, oldest first."""
    return tuple((parse_log_time(when), status) for when, status in sorted(log or []))


def status_log(changes: Iterable[tuple[datetime | None, str | None]]) -> list[list[str | None]] | None:
    """A timeline's status changes as stored on the order (None when it never had a status)."""
    stored = [[log_time(when) if when is not None else None, status] for when, status in changes]
    return stored or None


def status_changes(log: list[list[str | None]] | None) -> list[tuple[datetime | None, str | None]]:
    """The inverse of :func:`status_log`."""
    return [(parse_log_time(when) if when else None, status) for when, status in log or []]


def last_status_time(
    changes: Iterable[tuple[datetime | None, str | None]], manual_log: list[list[str]] | None
) -> datetime | None:
    """The latest instant the order's status changed or was set through the API."""
    stamps = [when for when, _ in changes if when is not None]
    stamps += [when for when, _ in manual_entries(manual_log) if when is not None]
    return max(stamps) if stamps else None


@functools.cache
def _update_statement() -> Any:
    return (
        sa.update(orders)
        .where(orders.c.shop_id == sa.bindparam("b_shop_id"), orders.c.id == sa.bindparam("b_id"))
        .values(
            tracking_status=sa.bindparam("b_status", type_=orders.c.tracking_status.type),
            delivered_at=sa.bindparam("b_delivered_at", type_=orders.c.delivered_at.type),
            rto_source=sa.bindparam("b_rto_source", type_=orders.c.rto_source.type),
            status_log=sa.bindparam("b_status_log", type_=orders.c.status_log.type),
            last_status_at=sa.bindparam("b_last_status_at", type_=orders.c.last_status_at.type),
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
