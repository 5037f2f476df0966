"""Keyset pages in SQL: one indexed statement per page, ties broken by id, NULL keys last.

A page is ``ORDER BY key, id LIMIT n + 1`` with ``(key, id)`` past the last item seen, a row
comparison that both SQLite and PostgreSQL answer from an index on ``(shop_id, key, id)``. When
the key can be NULL, NULLs come last whatever the direction: the page is the union of two
limited, indexed branches (keys that are set, then NULL keys by id), and once a cursor is among
the NULLs only the second branch runs. Cursor encoding stays with the callers (pagination.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

SORT_KEY = "sort_key"
SORT_ID = "sort_id"
SORT_PHASE = "sort_phase"


@dataclass(frozen=True, slots=True)
class KeysetOrder:
    key: Any
    """SQL expression of the sort key."""
    tiebreak: Any
    """SQL expression unique within the base set (an id), sorted in the same direction."""
    descending: bool
    nullable: bool = False


def _directed(column: Any, descending: bool) -> Any:
    return column.desc() if descending else column.asc()


def _past(order: KeysetOrder, key: Any, tiebreak: int) -> Any:
    mine = sa.tuple_(order.key, order.tiebreak)
    theirs = sa.tuple_(sa.literal(key, order.key.type), sa.literal(tiebreak, order.tiebreak.type))
    return mine < theirs if order.descending else mine > theirs


def _id_past(order: KeysetOrder, tiebreak: int) -> Any:
    bound = sa.literal(tiebreak, order.tiebreak.type)
    return order.tiebreak < bound if order.descending else order.tiebreak > bound


def page(base: sa.Select[Any], order: KeysetOrder, after: tuple[Any, int] | None, limit: int) -> Any:
    """A subquery of ``base``'s columns plus ``sort_key``, ``sort_id`` and ``sort_phase``: at most
    ``limit + 1`` rows after ``after`` (``(key, id)`` of the last item seen), unordered.

    Select from it and order by :func:`ordering` of it.
    """
    columns = (order.key.label(SORT_KEY), order.tiebreak.label(SORT_ID))
    by_key = (_directed(order.key, order.descending), _directed(order.tiebreak, order.descending))
    if not order.nullable:
        stmt = base.add_columns(*columns, sa.literal(0).label(SORT_PHASE))
        if after is not None:
            stmt = stmt.where(_past(order, *after))
        return stmt.order_by(*by_key).limit(limit + 1).subquery("keyset_page")
    nulls = (
        base.add_columns(*columns, sa.literal(1).label(SORT_PHASE))
        .where(order.key.is_(None))
        .order_by(_directed(order.tiebreak, order.descending))
        .limit(limit + 1)
    )
    if after is not None and after[0] is None:
        return nulls.where(_id_past(order, after[1])).subquery("keyset_page")
    keyed = base.add_columns(*columns, sa.literal(0).label(SORT_PHASE)).where(order.key.is_not(None))
    if after is not None:
        keyed = keyed.where(_past(order, *after))
    keyed = keyed.order_by(*by_key).limit(limit + 1)
    # SQLite wants each limited branch of a compound select in a subquery of its own.
    branches = [sa.select(branch.subquery()) for branch in (keyed, nulls)]
    return sa.union_all(*branches).subquery("keyset_page")


def ordering(subquery: Any, order: KeysetOrder) -> tuple[Any, ...]:
    """``ORDER BY`` of a :func:`page` subquery: set keys first, then NULL keys, ties by id."""
    return (
        subquery.c[SORT_PHASE].asc(),
        _directed(subquery.c[SORT_KEY], order.descending),
        _directed(subquery.c[SORT_ID], order.descending),
    )
