"""Returns. Each step is stored with the time Shopify triggered it, keeping the earliest, so the
final record does not depend on delivery order (docs/architecture.md: returns carry no reliable timestamp)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import dialect_insert, dialect_of
from service.models import Return

returns = Return.__table__  # type: ignore[attr-defined]

Step = Literal["requested", "approved", "declined", "closed"]


async def record_step(
    session: AsyncSession,
    shop_id: int,
    return_id: int,
    *,
    step: Step,
    at: datetime,
    order_id: int | None,
    name: str | None = None,
) -> int | None:
    """Record that a return reached ``step`` at ``at``. Returns the return's order id, if known."""
    column = f"{step}_at"
    stmt = dialect_insert(dialect_of(session), returns).values(
        shop_id=shop_id, id=return_id, order_id=order_id, name=name, **{column: at}
    )
    stored = returns.c[column]
    stmt = stmt.on_conflict_do_update(
        index_elements=["shop_id", "id"],
        set_={
            "order_id": sa.func.coalesce(returns.c.order_id, stmt.excluded.order_id),
            "name": sa.func.coalesce(returns.c.name, stmt.excluded.name),
            column: sa.case(
                (sa.or_(stored.is_(None), stmt.excluded[column] < stored), stmt.excluded[column]),
                else_=stored,
            ),
        },
    ).returning(returns.c.order_id)
    found = (await session.execute(stmt)).scalar()
    return None if found is None else int(found)
