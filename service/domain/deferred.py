"""Customer figures owed by a batch of deliveries, recomputed once, set-based.

Applied one at a time, every order delivery would recompute its customer's figures and tier
history at once. The worker instead hands its handlers a :class:`DeferredFigures` and settles it
before the batch commits: one statement for all the customers a batch touched instead of one or
two per delivery. Figures, the tier of record and its history are all functions of the stored
orders (and the shop's tier evaluations), so recomputing them once, later, gives exactly what
recomputing them after every delivery would.

Tracking is still derived delivery by delivery (it is written on the order). Callers without a
batch use :meth:`DeferredFigures.settle` right after their own change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from service.domain import stats, tiers, writeback
from service.domain.settings import ShopSettings, get_shop_settings


@dataclass(slots=True)
class _Owed:
    settings: ShopSettings | None = None
    #: customers whose orders changed
    customers: set[int] = field(default_factory=set)
    #: customers that may have lost their last order (a delete, an order that changed customer)
    left: set[int] = field(default_factory=set)
    #: customers whose record this batch may have written: each that exists at settlement gets
    #: a figures row, and its tier history is derived again (when it began to exist matters)
    rows: set[int] = field(default_factory=set)
    #: orders this batch stored for the first time (judged for the COD RTO risk tag, docs/shopify-app.md)
    created_orders: set[int] = field(default_factory=set)


class DeferredFigures:
    """What one batch owes: collected by the handlers, paid by :meth:`settle`."""

    def __init__(self) -> None:
        self._shops: dict[int, _Owed] = {}

    def __bool__(self) -> bool:
        return bool(self._shops)

    def _owed(self, shop_id: int) -> _Owed:
        owed = self._shops.get(shop_id)
        if owed is None:
            owed = self._shops[shop_id] = _Owed()
        return owed

    def need_rows(self, shop_id: int, customer_ids: Iterable[int]) -> None:
        self._owed(shop_id).rows.update(customer_ids)

    def note_created_orders(self, shop_id: int, order_ids: Iterable[int]) -> None:
        ids = set(order_ids)
        if ids:
            self._owed(shop_id).created_orders.update(ids)

    def owe(
        self, shop_id: int, settings: ShopSettings, customer_ids: Iterable[int], *, left: Iterable[int] = ()
    ) -> None:
        """Owe the figures of these customers (``left``: some may have lost their last order)."""
        owed = self._owed(shop_id)
        owed.settings = settings
        owed.customers.update(customer_ids)
        owed.left.update(left)

    def merge(self, other: DeferredFigures) -> None:
        """Take over what ``other`` owes (``other`` is left empty)."""
        shops, other._shops = other._shops, {}
        for shop_id, theirs in shops.items():
            owed = self._owed(shop_id)
            owed.settings = theirs.settings or owed.settings
            owed.customers |= theirs.customers
            owed.left |= theirs.left
            owed.rows |= theirs.rows
            owed.created_orders |= theirs.created_orders

    async def settle(self, session: AsyncSession) -> list[tiers.TierMove]:
        """Pay everything owed, in the caller's transaction; the collector is empty afterwards."""
        shops, self._shops = self._shops, {}
        moves: list[tiers.TierMove] = []
        for shop_id, owed in shops.items():
            # Before anything is derived: another transaction deriving the same customers
            # commits first, and what follows sees its orders (stats.lock_customers).
            await stats.lock_customers(session, shop_id, owed.customers | owed.left | owed.rows)
            await stats.ensure_rows_of_customers(session, shop_id, owed.rows)
            settings = owed.settings or await get_shop_settings(session, shop_id)
            # A customer can gain an order in one delivery and lose it in the next: whoever
            # lost one anywhere in the batch is recomputed with the zeroing statement.
            await stats.refresh(session, shop_id, owed.customers - owed.left, settings)
            if owed.left:
                await stats.refresh(session, shop_id, owed.left, settings, may_have_no_orders=True)
            touched = owed.customers | owed.left | owed.rows
            moves += await tiers.rederive(
                session,
                shop_id,
                touched,
                tiers.Rules(settings.tier_thresholds, settings.include_test_orders),
            )
            # Write-back (docs/shopify-app.md): queued in this transaction; unchanged figures queue nothing.
            if settings.write_back.enabled:
                await writeback.queue_customers(session, shop_id, touched, settings)
                if owed.created_orders:
                    await writeback.queue_risky_orders(session, shop_id, owed.created_orders, settings)
        return moves
