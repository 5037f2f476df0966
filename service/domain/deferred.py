"""Customer figures owed by a batch of deliveries, recomputed once, set-based.

Applied one at a time, every order delivery recomputes its customer's figures at once. The worker
instead hands its handlers a :class:`DeferredFigures` and settles it before the batch commits:
one statement for all the customers a batch touched instead of one or two per delivery.

What waits, and what does not:

* Tracking is still derived delivery by delivery, so every status change, and whether it came
  with the order's creation, is what one-at-a-time application sees (SPEC §4.2).
* The figures of every customer whose orders changed wait until something reads them: a tier-of-
  record trigger (SPEC §4.3), which settles everything owed before it records the live tier, or
  the end of the batch. Figures are a function of the stored orders, so recomputing them once,
  later, gives what recomputing them after every delivery would: the tier history is the same.
* Zero figures rows for the customers the batch wrote are inserted at the same time.

A delivery whose effects would interleave with owed work (a customer deletion, a redaction) is
applied only after :meth:`DeferredFigures.settle`; the worker sees to that.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from service.domain import stats, tiers
from service.domain.settings import ShopSettings
from service.domain.tiers import Trigger


@dataclass(slots=True)
class _Owed:
    settings: ShopSettings | None = None
    #: customers whose orders changed
    customers: set[int] = field(default_factory=set)
    #: customers that may have lost their last order (a delete, an order that changed customer)
    left: set[int] = field(default_factory=set)
    #: customers this batch may have written: each that exists at settlement gets a figures row
    rows: set[int] = field(default_factory=set)
    triggers: list[Trigger] = field(default_factory=list)


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

    async def owe(
        self,
        session: AsyncSession,
        shop_id: int,
        settings: ShopSettings,
        customer_ids: Iterable[int],
        *,
        left: Iterable[int] = (),
        triggers: Sequence[Trigger] = (),
    ) -> None:
        """Owe the figures of these customers (``left``: some may have lost their last order).

        Triggers are recorded at once: a trigger reads the live tier, so everything owed so far is
        settled first and the trigger sees exactly the figures one-by-one application would.
        """
        owed = self._owed(shop_id)
        owed.settings = settings
        owed.customers.update(customer_ids)
        owed.left.update(left)
        owed.triggers.extend(triggers)
        if triggers:
            await self.settle(session)

    def merge(self, other: DeferredFigures) -> None:
        """Take over what ``other`` owes (``other`` is left empty)."""
        shops, other._shops = other._shops, {}
        for shop_id, theirs in shops.items():
            owed = self._owed(shop_id)
            owed.settings = theirs.settings or owed.settings
            owed.customers |= theirs.customers
            owed.left |= theirs.left
            owed.rows |= theirs.rows
            owed.triggers.extend(theirs.triggers)

    async def settle(self, session: AsyncSession) -> list[tiers.TierMove]:
        """Pay everything owed, in the caller's transaction; the collector is empty afterwards."""
        shops, self._shops = self._shops, {}
        moves: list[tiers.TierMove] = []
        for shop_id, owed in shops.items():
            await stats.ensure_rows_of_customers(session, shop_id, owed.rows)
            if owed.settings is None:
                continue
            # A customer can gain an order in one delivery and lose it in the next: whoever
            # lost one anywhere in the batch is recomputed with the zeroing statement.
            await stats.refresh(session, shop_id, owed.customers - owed.left, owed.settings)
            if owed.left:
                await stats.refresh(session, shop_id, owed.left, owed.settings, may_have_no_orders=True)
            moves += await tiers.record_all(session, shop_id, owed.triggers, owed.settings.tier_thresholds)
        return moves
