"""How a claimed batch is applied: its plan (singles, runs, barriers) and the run appliers.

The domain rules know nothing of batches: every figure, tracking status and tier history is a
function of the stored facts (docs/domain.md), so applying deliveries together, or settling what
they owe once, leaves what applying them one at a time leaves. This module is the only place that
relies on that, and it is imported by the worker alone.

A plan is a list of steps over the claimed deliveries, in their order:

* :class:`Run`: consecutive deliveries of one shop that a set-based applier takes together (order
  snapshots; fulfillments and carrier events), each key once (a repeated order snapshot starts
  the next run: two versions of one order are not written by one statement);
* :class:`Single`: one delivery for its topic's handler. ``deferred`` says whether it leaves its
  customers' figures to the batch (it commutes with what earlier deliveries owe); one that does
  not settles what is owed first;
* :class:`Rejected`: a body its topic's payload model refuses (``failed``, never retried);
* :class:`Ignored`: a topic tierline does not handle.

A delivery that erases data (``customers/redact``, ``shop/redact``) ends the plan: the rest of
the batch is left for the next claim, so nothing claimed before the erasure writes data back.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from service.domain import fulfillments, orders
from service.domain.deferred import DeferredFigures
from service.domain.inbox import ClaimedDelivery
from webhooks.handlers.fulfillments import event_snapshot, fulfillment_snapshot
from webhooks.handlers.orders import ORDER_TOPICS, order_snapshot
from webhooks.payloads import FulfillmentEventPayload, FulfillmentPayload, OrderPayload
from webhooks.router import DeliveryContext, Route, TopicRouter

#: Topics whose handlers leave figures and tier histories to the batch: their writes commute with
#: work earlier deliveries owe. Any other topic settles what is owed before it applies.
DEFERRED_TOPICS = frozenset(
    {
        *ORDER_TOPICS,
        "orders/delete",
        "customers/create",
        "customers/update",
        "fulfillments/create",
        "fulfillments/update",
        "fulfillment_events/create",
        "returns/request",
        "returns/approve",
        "returns/decline",
        "returns/close",
        "refunds/create",
    }
)
#: Topics that erase data: the plan ends after them.
BARRIER_TOPICS = frozenset({"customers/redact", "shop/redact"})

Items = Sequence[tuple[DeliveryContext, Any]]
#: A set-based applier: the deliveries' contexts and payloads, and what the batch owes.
Applier = Callable[[Items, DeferredFigures], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RunKind:
    """Deliveries a set-based applier takes together."""

    name: str
    topics: frozenset[str]
    #: A run takes each key once.
    key: Callable[[Any], Hashable]
    apply: Applier


async def apply_order_snapshots(items: Items, deferred: DeferredFigures) -> None:
    """Snapshots of distinct orders of one shop, as one set (``orders.apply_orders``)."""
    ctx = items[0][0]
    snaps = [order_snapshot(payload) for _, payload in items]
    await orders.apply_orders(ctx.session, ctx.shop_id, snaps, await ctx.shop_settings(), deferred=deferred)


async def apply_facts(items: Items, deferred: DeferredFigures) -> None:
    """Fulfillments and carrier events of one shop (several may be of one order): stored with one
    statement per kind, in delivery order, and their orders refreshed together once. Facts are
    stored whatever order they come in (each fulfillment behind its ``updated_at`` guard, each
    event once) and tracking is derived from all of them, so one refresh after storing them all
    leaves what a refresh after each would."""
    ctx = items[0][0]
    await fulfillments.store_facts(
        ctx.session,
        ctx.shop_id,
        [fulfillment_snapshot(p) for _, p in items if isinstance(p, FulfillmentPayload)],
        [event_snapshot(c, p) for c, p in items if isinstance(p, FulfillmentEventPayload)],
    )
    await orders.refresh_facts(
        ctx.session,
        ctx.shop_id,
        [p.order_id for _, p in items],
        await ctx.shop_settings(),
        deferred=deferred,
    )


def _order_key(payload: OrderPayload) -> Hashable:
    return payload.id


def _fact_key(payload: FulfillmentPayload | FulfillmentEventPayload) -> Hashable:
    return type(payload).__name__, payload.id


RUN_KINDS = (
    RunKind("order snapshots", frozenset(ORDER_TOPICS), _order_key, apply_order_snapshots),
    RunKind(
        "facts",
        frozenset({"fulfillments/create", "fulfillments/update", "fulfillment_events/create"}),
        _fact_key,
        apply_facts,
    ),
)
_RUN_OF_TOPIC = {topic: kind for kind in RUN_KINDS for topic in kind.topics}


@dataclass(slots=True)
class Parsed:
    """A claimed delivery with its route and payload (and how long parsing took)."""

    delivery: ClaimedDelivery
    route: Route[Any]
    payload: BaseModel
    seconds: float


@dataclass(slots=True)
class Single:
    item: Parsed
    deferred: bool


@dataclass(slots=True)
class Run:
    kind: RunKind
    shop_id: int
    items: list[Parsed] = field(default_factory=list)
    keys: set[Hashable] = field(default_factory=set)

    def takes(self, item: Parsed, kind: RunKind) -> bool:
        return (
            kind is self.kind
            and item.delivery.shop_id == self.shop_id
            and kind.key(item.payload) not in self.keys
        )

    def add(self, item: Parsed) -> None:
        self.items.append(item)
        self.keys.add(self.kind.key(item.payload))


@dataclass(slots=True)
class Rejected:
    delivery: ClaimedDelivery
    error: ValidationError
    seconds: float


@dataclass(slots=True)
class Ignored:
    delivery: ClaimedDelivery


Step = Single | Run | Rejected | Ignored


def plan(claimed: Sequence[ClaimedDelivery], router: TopicRouter, *, runs: bool = True) -> list[Step]:
    """The steps that apply ``claimed`` in order. Without ``runs``, every delivery is a single
    (the one-savepoint-per-delivery attempt)."""
    steps: list[Step] = []
    run: Run | None = None
    for delivery in claimed:
        route = router.get(delivery.topic)
        started = time.perf_counter()
        if route is None:
            steps.append(Ignored(delivery))
            continue
        try:
            payload = route.parse(delivery.body)
        except ValidationError as exc:
            steps.append(Rejected(delivery, exc, time.perf_counter() - started))
            continue
        item = Parsed(delivery, route, payload, time.perf_counter() - started)
        kind = _RUN_OF_TOPIC.get(delivery.topic) if runs else None
        if kind is not None:
            if run is None or not run.takes(item, kind):
                run = Run(kind, delivery.shop_id)
                steps.append(run)
            run.add(item)
            continue
        run = None
        steps.append(Single(item, deferred=delivery.topic in DEFERRED_TOPICS))
        if delivery.topic in BARRIER_TOPICS:
            break
    return steps
