"""Write-back (docs/shopify-app.md): the figures where merchants work, as an exact and durable outbox.

Pure rules first: the state tierline wants a Shopify customer or order to hold
(:func:`customer_desired`, :func:`order_desired`), and the difference to what Shopify holds
(:func:`plan`). Then the outbox (``write_back_outbox``): rows queued in the transaction that
changed the figures, one per resource, coalesced to the latest desired state, claimed by the
sender (:mod:`service.writeback`) under a lease, settled ``sent``/``pending``/``failed``. And the
per-shop cost bucket shared by every worker process (``write_back_shops``).

Domain code: flush only, never commit (the edges own the transaction).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service import metrics
from service.db import dialect_insert, dialect_of, insert_ignore
from service.domain.settings import ShopSettings, WriteBackSettings, get_shop_settings
from service.domain.tier_levels import LEVELS, spoken_list
from service.domain.tiers import tier_for
from service.domain.tracking import RTO_STATES
from service.models import CustomerStats, Order, Shop, WriteBackOutbox, WriteBackShop, WriteBackState
from service.types import utc_now

outbox = WriteBackOutbox.__table__  # type: ignore[attr-defined]
wb_shops = WriteBackShop.__table__  # type: ignore[attr-defined]
customer_stats = CustomerStats.__table__  # type: ignore[attr-defined]
orders = Order.__table__  # type: ignore[attr-defined]
shops = Shop.__table__  # type: ignore[attr-defined]

CUSTOMER = "customer"
ORDER = "order"
#: The metafield namespace tierline owns (an app-reserved namespace: ``app--<app id>--tierline``).
NAMESPACE = "$app:tierline"
TAG_PREFIX = "tierline-"
#: Lowest first, as declared (``tier_levels``).
TIERS = tuple(level.name for level in LEVELS)
TIER_TAGS = frozenset(f"{TAG_PREFIX}{tier}" for tier in TIERS)
RISK_TAG = "tierline-cod-rto-risk"

#: Metafields of a customer and of an order: key → (type, name, description).
CUSTOMER_METAFIELDS: dict[str, tuple[str, str, str]] = {
    "tier": (
        "single_line_text_field",
        "tierline tier",
        "Spend tier from lifetime value and the shop's thresholds: " + spoken_list(TIERS) + ".",
    ),
    "ltv": (
        "number_decimal",
        "tierline lifetime value",
        "Sum of the customer's counted orders in the shop currency (not cancelled, not returned to origin).",
    ),
    "order_count": ("number_integer", "tierline order count", "Orders that count towards lifetime value."),
    "cod_rto_count": (
        "number_integer",
        "tierline COD RTO count",
        "Cash-on-delivery orders of this customer that came back to origin (RTO).",
    ),
}
ORDER_METAFIELDS: dict[str, tuple[str, str, str]] = {
    "customer_cod_rto_count": (
        "number_integer",
        "tierline customer COD RTO count",
        "The customer's COD RTO count when the order was created (tierline).",
    ),
    "customer_tier": (
        "single_line_text_field",
        "tierline customer tier",
        "The customer's spend tier when the order was created (tierline).",
    ),
}

#: Attempts before a row is ``failed``; back-off 2ⁿ seconds up to 10 minutes between them.
MAX_ATTEMPTS = 8
BACKOFF_MAX_SECONDS = 600.0
#: Until the first answer tells the real bucket, assume the smallest documented one.
DEFAULT_BUCKET_MAXIMUM = 1000.0
DEFAULT_RESTORE_RATE = 50.0
#: Setup (definitions, segments) that failed is tried again after this long.
SETUP_RETRY = timedelta(minutes=5)
QUEUE_CHUNK = 1000


# --- pure rules ---------------------------------------------------------------------------------


def canonical(document: Mapping[str, Any]) -> str:
    """The text a desired state is stored and compared as."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def customer_desired(
    ltv: Decimal, order_count: int, rto_count: int, settings: ShopSettings
) -> dict[str, Any]:
    tier = tier_for(ltv, settings.tier_thresholds)
    return {
        "metafields": {
            "tier": tier,
            "ltv": f"{ltv:.2f}",
            "order_count": str(int(order_count)),
            "cod_rto_count": str(int(rto_count)),
        },
        "tags": [f"{TAG_PREFIX}{tier}"] if settings.write_back.customer_tags else [],
    }


def order_desired(rto_count: int, tier: str) -> dict[str, Any]:
    return {
        "metafields": {"customer_cod_rto_count": str(int(rto_count)), "customer_tier": tier},
        "tags": [RISK_TAG],
    }


def owned_tags(kind: str) -> frozenset[str]:
    """The tags tierline manages on a resource: the only ones it ever removes."""
    return TIER_TAGS if kind == CUSTOMER else frozenset({RISK_TAG})


@dataclass(frozen=True, slots=True)
class Current:
    """What Shopify holds: tags and tierline's metafield values."""

    tags: frozenset[str]
    metafields: Mapping[str, str | None]


@dataclass(slots=True)
class Plan:
    """The writes that take a resource from what Shopify holds to the desired state."""

    metafields: dict[str, str] = field(default_factory=dict)
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.metafields or self.add or self.remove)


def plan(kind: str, desired: Mapping[str, Any], current: Current) -> Plan:
    """Only the difference: metafields whose value differs, missing tags, tierline tags not wanted.
    Tags tierline does not own are never touched."""
    wanted = set(desired.get("tags") or [])
    values: Mapping[str, str] = desired.get("metafields") or {}
    return Plan(
        metafields={k: v for k, v in values.items() if not same_value(current.metafields.get(k), v)},
        add=sorted(wanted - current.tags),
        remove=sorted((current.tags & owned_tags(kind)) - wanted),
    )


def same_value(held: str | None, wanted: str) -> bool:
    """Shopify may answer a decimal as ``12.5`` for ``12.50``: compare numbers as numbers."""
    if held is None:
        return False
    if held == wanted:
        return True
    try:
        return Decimal(held) == Decimal(wanted)
    except ArithmeticError:
        return False


def metafield_type(kind: str, key: str) -> str:
    return (CUSTOMER_METAFIELDS if kind == CUSTOMER else ORDER_METAFIELDS)[key][0]


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_MAX_SECONDS, 2.0 ** max(1, attempts)))


def gid(kind: str, resource_id: int) -> str:
    return f"gid://shopify/{'Customer' if kind == CUSTOMER else 'Order'}/{resource_id}"


# --- queueing (in the transaction of the change) ----------------------------------------------


async def _installed(session: AsyncSession, shop_id: int) -> bool:
    """Write-back runs for installed shops that hold a token (uninstall stops it)."""
    row = (
        await session.execute(
            sa.select(shops.c.access_token_enc, shops.c.uninstalled_at).where(shops.c.id == shop_id)
        )
    ).first()
    return row is not None and row.access_token_enc is not None and row.uninstalled_at is None


def _upsert_statement(dialect: str) -> Any:
    stmt = dialect_insert(dialect, outbox)
    return stmt.on_conflict_do_update(
        index_elements=["shop_id", "kind", "resource_id"],
        set_={
            "desired": stmt.excluded.desired,
            "version": outbox.c.version + 1,
            "state": WriteBackState.PENDING,
            "attempts": 0,
            "next_attempt_at": stmt.excluded.next_attempt_at,
            "last_error": None,
            "queued_at": stmt.excluded.queued_at,
        },
        where=outbox.c.desired != stmt.excluded.desired,
    )


async def queue_customers(
    session: AsyncSession,
    shop_id: int,
    customer_ids: Iterable[int],
    settings: ShopSettings | None = None,
    *,
    check_installed: bool = True,
) -> int:
    """Queue the desired state of these customers from their figures; a row whose desired state
    is unchanged is left alone (so an echo of tierline's own write queues nothing). Returns how
    many rows became pending."""
    ids = sorted({int(c) for c in customer_ids if c is not None})
    if not ids:
        return 0
    settings = settings or await get_shop_settings(session, shop_id)
    if not settings.write_back.enabled or (check_installed and not await _installed(session, shop_id)):
        return 0
    now = utc_now()
    queued = 0
    statement = _upsert_statement(dialect_of(session))
    for start in range(0, len(ids), QUEUE_CHUNK):
        chunk = ids[start : start + QUEUE_CHUNK]
        rows = (
            await session.execute(
                sa.select(
                    customer_stats.c.customer_id,
                    customer_stats.c.ltv,
                    customer_stats.c.order_count,
                    customer_stats.c.rto_count,
                ).where(customer_stats.c.shop_id == shop_id, customer_stats.c.customer_id.in_(chunk))
            )
        ).all()
        if not rows:
            continue
        values = [
            {
                "shop_id": shop_id,
                "kind": CUSTOMER,
                "resource_id": int(row.customer_id),
                "desired": canonical(customer_desired(row.ltv, row.order_count, row.rto_count, settings)),
                "version": 1,
                "state": WriteBackState.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "queued_at": now,
            }
            for row in rows
        ]
        result = await session.execute(statement.returning(outbox.c.id), values)
        queued += len(result.all())
    if queued:
        metrics.WRITEBACK_QUEUED.labels(CUSTOMER).inc(queued)
    return queued


async def queue_shop(session: AsyncSession, shop_id: int, settings: ShopSettings | None = None) -> int:
    """Every customer of the shop (write-back turned on, settings changed, first backfill done):
    only those whose desired state changed become pending."""
    settings = settings or await get_shop_settings(session, shop_id)
    if not settings.write_back.enabled or not await _installed(session, shop_id):
        return 0
    queued = 0
    after = -1
    while True:
        ids = [
            int(i)
            for i in (
                await session.scalars(
                    sa.select(customer_stats.c.customer_id)
                    .where(customer_stats.c.shop_id == shop_id, customer_stats.c.customer_id > after)
                    .order_by(customer_stats.c.customer_id)
                    .limit(QUEUE_CHUNK)
                )
            ).all()
        ]
        if not ids:
            return queued
        queued += await queue_customers(session, shop_id, ids, settings, check_installed=False)
        after = ids[-1]


async def queue_risky_orders(
    session: AsyncSession, shop_id: int, order_ids: Iterable[int], settings: ShopSettings
) -> int:
    """New COD orders of customers whose COD RTO count reaches ``riskMinCodRto``: the risk tag and
    the order metafields, queued once per order (an order is judged when it is created)."""
    ids = sorted(set(order_ids))
    write_back = settings.write_back
    if not ids or not (write_back.enabled and write_back.order_risk_tag):
        return 0
    if not await _installed(session, shop_id):
        return 0
    conditions = [
        orders.c.shop_id == shop_id,
        orders.c.id.in_(ids),
        orders.c.payment_method == "cod",
        orders.c.cancelled_at.is_(None),
        sa.or_(orders.c.tracking_status.is_(None), orders.c.tracking_status.not_in(RTO_STATES)),
        customer_stats.c.rto_count >= write_back.risk_min_cod_rto,
    ]
    if not settings.include_test_orders:
        conditions.append(orders.c.test.is_(False))
    rows = (
        await session.execute(
            sa.select(orders.c.id, customer_stats.c.rto_count, customer_stats.c.ltv)
            .join(
                customer_stats,
                sa.and_(
                    customer_stats.c.shop_id == orders.c.shop_id,
                    customer_stats.c.customer_id == orders.c.customer_id,
                ),
            )
            .where(*conditions)
        )
    ).all()
    if not rows:
        return 0
    now = utc_now()
    result = await session.execute(
        insert_ignore(dialect_of(session), outbox, ["shop_id", "kind", "resource_id"]).returning(outbox.c.id),
        [
            {
                "shop_id": shop_id,
                "kind": ORDER,
                "resource_id": int(row.id),
                "desired": canonical(
                    order_desired(row.rto_count, tier_for(row.ltv, settings.tier_thresholds))
                ),
                "version": 1,
                "state": WriteBackState.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "queued_at": now,
            }
            for row in rows
        ],
    )
    queued = len(result.all())
    if queued:
        metrics.WRITEBACK_QUEUED.labels(ORDER).inc(queued)
    return queued


async def drop_unsent(session: AsyncSession, shop_id: int) -> None:
    """Uninstalled, or write-back turned off: nothing more is sent (rows already sent stay as the
    record of what Shopify holds). Setup runs again on the next install."""
    await session.execute(
        sa.delete(outbox).where(outbox.c.shop_id == shop_id, outbox.c.state != WriteBackState.SENT)
    )
    await session.execute(
        sa.update(wb_shops).where(wb_shops.c.shop_id == shop_id).values(setup_at=None, setup_next_at=None)
    )


async def drop_for_customer(
    session: AsyncSession, shop_id: int, customer_id: int, order_ids: Iterable[int]
) -> None:
    """``customers/redact``: the customer's rows and their orders' rows are dropped, never sent."""
    await session.execute(
        sa.delete(outbox).where(
            outbox.c.shop_id == shop_id,
            sa.or_(
                sa.and_(outbox.c.kind == CUSTOMER, outbox.c.resource_id == customer_id),
                sa.and_(outbox.c.kind == ORDER, outbox.c.resource_id.in_(sorted(set(order_ids)))),
            ),
        )
    )


# --- the sender's side ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    shop_id: int
    shop: str
    kind: str
    resource_id: int
    desired: str
    version: int
    attempts: int

    @property
    def document(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.desired)
        return value


async def claim(
    session: AsyncSession, owner: str, *, limit: int, lease_seconds: float, shop_id: int | None = None
) -> list[Claimed]:
    """Due pending rows of one installed shop (the shop of the most overdue row, unless given),
    under a lease (``SKIP LOCKED`` on PostgreSQL)."""
    now = utc_now()
    query = (
        sa.select(outbox.c.id, outbox.c.shop_id)
        .join(shops, shops.c.id == outbox.c.shop_id)
        .where(
            outbox.c.state == WriteBackState.PENDING,
            outbox.c.next_attempt_at <= now,
            sa.or_(outbox.c.lease_expires_at.is_(None), outbox.c.lease_expires_at < now),
            shops.c.access_token_enc.is_not(None),
            shops.c.uninstalled_at.is_(None),
        )
        .order_by(outbox.c.next_attempt_at, outbox.c.id)
    )
    postgres = dialect_of(session) == "postgresql"
    if shop_id is None:
        first = (await session.execute(query.limit(1))).first()
        if first is None:
            return []
        shop_id = int(first.shop_id)
    query = query.where(outbox.c.shop_id == shop_id).limit(limit)
    if postgres:
        query = query.with_for_update(skip_locked=True, of=outbox)
    ids = [int(row.id) for row in (await session.execute(query)).all()]
    if not ids:
        return []
    await session.execute(
        sa.update(outbox)
        .where(outbox.c.id.in_(ids))
        .values(
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=outbox.c.attempts + 1,
        )
    )
    rows = (
        await session.execute(
            sa.select(outbox, shops.c.domain)
            .join(shops, shops.c.id == outbox.c.shop_id)
            .where(outbox.c.id.in_(ids))
            .order_by(outbox.c.id)
        )
    ).all()
    return [
        Claimed(
            int(r.id),
            int(r.shop_id),
            r.domain,
            r.kind,
            int(r.resource_id),
            r.desired,
            int(r.version),
            int(r.attempts),
        )
        for r in rows
    ]


async def mark_sent(
    session: AsyncSession, row: Claimed, owner: str, *, wrote: bool, now: datetime | None = None
) -> bool:
    """Shopify holds ``row.desired``. ``sent`` if nothing newer was queued meanwhile, else the
    row stays ``pending`` for the newer state. False when the lease was lost."""
    now = now or utc_now()
    unchanged = outbox.c.version == row.version
    values: dict[str, Any] = {
        "state": sa.case((unchanged, WriteBackState.SENT), else_=WriteBackState.PENDING),
        "attempts": 0,
        "written": row.desired,
        "lease_owner": None,
        "lease_expires_at": None,
        "last_error": None,
    }
    if wrote:
        values["last_written_at"] = now
    result = await session.execute(
        sa.update(outbox).where(outbox.c.id == row.id, outbox.c.lease_owner == owner).values(**values)
    )
    if wrote:
        await ensure_shop_row(session, row.shop_id)
        await session.execute(
            sa.update(wb_shops).where(wb_shops.c.shop_id == row.shop_id).values(last_written_at=now)
        )
    return bool(getattr(result, "rowcount", 0))


async def mark_retry(session: AsyncSession, row: Claimed, owner: str, error: str) -> str:
    """A failed attempt: back-off, or ``failed`` after :data:`MAX_ATTEMPTS`. Returns the state."""
    failed = row.attempts >= MAX_ATTEMPTS
    state = WriteBackState.FAILED if failed else WriteBackState.PENDING
    await session.execute(
        sa.update(outbox)
        .where(outbox.c.id == row.id, outbox.c.lease_owner == owner, outbox.c.version == row.version)
        .values(
            state=state,
            next_attempt_at=utc_now() + backoff(row.attempts),
            last_error=error[:2000],
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    # A newer desired state arrived meanwhile: it is tried at once, from zero attempts.
    await session.execute(
        sa.update(outbox)
        .where(outbox.c.id == row.id, outbox.c.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    )
    return state


async def mark_failed(session: AsyncSession, row: Claimed, owner: str, error: str) -> None:
    """A write Shopify can never accept (the resource is gone): ``failed`` at once."""
    await session.execute(
        sa.update(outbox)
        .where(outbox.c.id == row.id, outbox.c.lease_owner == owner)
        .values(state=WriteBackState.FAILED, last_error=error[:2000], lease_owner=None, lease_expires_at=None)
    )


async def replay(session: AsyncSession, *, shop_id: int | None = None, row_id: int | None = None) -> int:
    """Failed rows back to ``pending`` (``tierline write-back replay``, the deliveries page)."""
    conditions = [outbox.c.state == WriteBackState.FAILED]
    if shop_id is not None:
        conditions.append(outbox.c.shop_id == shop_id)
    if row_id is not None:
        conditions.append(outbox.c.id == row_id)
    result = await session.execute(
        sa.update(outbox)
        .where(*conditions)
        .values(state=WriteBackState.PENDING, attempts=0, next_attempt_at=utc_now(), last_error=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True, slots=True)
class Summary:
    pending: int
    failed: int
    last_written_at: datetime | None


async def summary(session: AsyncSession, shop_id: int) -> Summary:
    counts: dict[str, int] = dict(
        (
            await session.execute(
                sa.select(outbox.c.state, sa.func.count())
                .where(outbox.c.shop_id == shop_id, outbox.c.state != WriteBackState.SENT)
                .group_by(outbox.c.state)
            )
        ).all()
    )
    last = await session.scalar(sa.select(wb_shops.c.last_written_at).where(wb_shops.c.shop_id == shop_id))
    return Summary(
        int(counts.get(WriteBackState.PENDING, 0)), int(counts.get(WriteBackState.FAILED, 0)), last
    )


async def failed_rows(session: AsyncSession, shop_id: int, *, limit: int = 50) -> Sequence[Any]:
    return (
        await session.execute(
            sa.select(
                outbox.c.id,
                outbox.c.kind,
                outbox.c.resource_id,
                outbox.c.attempts,
                outbox.c.last_error,
                outbox.c.queued_at,
            )
            .where(outbox.c.shop_id == shop_id, outbox.c.state == WriteBackState.FAILED)
            .order_by(outbox.c.id.desc())
            .limit(limit)
        )
    ).all()


# --- the shared cost bucket and setup -----------------------------------------------------------


async def ensure_shop_row(session: AsyncSession, shop_id: int) -> None:
    await session.execute(
        insert_ignore(dialect_of(session), wb_shops, ["shop_id"]),
        {
            "shop_id": shop_id,
            "bucket_available": DEFAULT_BUCKET_MAXIMUM,
            "bucket_maximum": DEFAULT_BUCKET_MAXIMUM,
            "bucket_restore_rate": DEFAULT_RESTORE_RATE,
            "bucket_at": utc_now(),
            "setup": {},
        },
    )


async def reserve(session: AsyncSession, shop_id: int, cost: float, *, now: datetime | None = None) -> float:
    """Take ``cost`` points from the shop's bucket as every worker process sees it: 0 when taken,
    else the seconds until the bucket can pay (nothing taken)."""
    now = now or utc_now()
    await ensure_shop_row(session, shop_id)
    query = sa.select(
        wb_shops.c.bucket_available,
        wb_shops.c.bucket_maximum,
        wb_shops.c.bucket_restore_rate,
        wb_shops.c.bucket_at,
    ).where(wb_shops.c.shop_id == shop_id)
    if dialect_of(session) == "postgresql":
        query = query.with_for_update()
    row = (await session.execute(query)).one()
    rate = float(row.bucket_restore_rate) or DEFAULT_RESTORE_RATE
    maximum = float(row.bucket_maximum) or DEFAULT_BUCKET_MAXIMUM
    elapsed = max(0.0, (now - row.bucket_at).total_seconds()) if row.bucket_at else 0.0
    available = min(maximum, float(row.bucket_available) + elapsed * rate)
    cost = min(cost, maximum)
    if available < cost:
        return (cost - available) / rate
    await session.execute(
        sa.update(wb_shops)
        .where(wb_shops.c.shop_id == shop_id)
        .values(bucket_available=available - cost, bucket_at=now)
    )
    return 0.0


async def observe(
    session: AsyncSession,
    shop_id: int,
    *,
    available: float,
    maximum: float,
    restore_rate: float,
    now: datetime | None = None,
) -> None:
    """Shopify's own view of the bucket (``throttleStatus``) replaces the estimate."""
    await ensure_shop_row(session, shop_id)
    await session.execute(
        sa.update(wb_shops)
        .where(wb_shops.c.shop_id == shop_id)
        .values(
            bucket_available=available,
            bucket_maximum=maximum,
            bucket_restore_rate=restore_rate,
            bucket_at=now or utc_now(),
        )
    )


async def setup_state(session: AsyncSession, shop_id: int) -> tuple[datetime | None, datetime | None]:
    row = (
        await session.execute(
            sa.select(wb_shops.c.setup_at, wb_shops.c.setup_next_at).where(wb_shops.c.shop_id == shop_id)
        )
    ).first()
    return (row.setup_at, row.setup_next_at) if row else (None, None)


async def setup_done(session: AsyncSession, shop_id: int, setup: dict[str, Any]) -> None:
    await ensure_shop_row(session, shop_id)
    await session.execute(
        sa.update(wb_shops)
        .where(wb_shops.c.shop_id == shop_id)
        .values(setup=setup, setup_at=utc_now(), setup_next_at=None, setup_error=None)
    )


async def setup_failed(session: AsyncSession, shop_id: int, error: str) -> None:
    await ensure_shop_row(session, shop_id)
    await session.execute(
        sa.update(wb_shops)
        .where(wb_shops.c.shop_id == shop_id)
        .values(setup_next_at=utc_now() + SETUP_RETRY, setup_error=error[:2000])
    )


def write_back_of(settings: ShopSettings) -> WriteBackSettings:
    return settings.write_back
