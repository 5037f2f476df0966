"""Sync jobs (``shop_jobs``): queue, claim under a lease, heartbeat, settle, schedule, describe.

A job is a backfill or a reconciliation of one shop. At most one job per shop is active
(``queued`` or ``running``): a partial unique index says so, and every insert here is
``ON CONFLICT DO NOTHING``. A worker claims a due job (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)
and holds it under a lease it renews while it works; a worker that dies stops renewing, and once
the lease has expired another worker claims the job and resumes it from ``shops.sync_state``.
Every function here runs in a short transaction of its caller: none is open while Shopify is
called.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import dialect_insert, dialect_of
from service.models import JobState, Shop, ShopJob
from service.types import utc_now

jobs = ShopJob.__table__  # type: ignore[attr-defined]
shops = Shop.__table__  # type: ignore[attr-defined]

BACKFILL = "backfill"
RECONCILE = "reconcile"
KINDS = (BACKFILL, RECONCILE)
#: Longest error text kept on a job row.
MAX_ERROR_LENGTH = 1000
#: PostgreSQL advisory lock key of the scheduler: one worker schedules at a time.
SCHEDULER_LOCK_KEY = 0x7469_6572_6C69_6E65 & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    shop_id: int
    shop: str
    kind: str
    attempts: int
    #: When the job was queued: a sync that started after it and completed did what it asks
    #: (``service.sync.ShopSync.completed_since``).
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class JobRow:
    id: int
    kind: str
    state: str
    trigger: str
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    next_run_at: datetime
    customers: int
    orders: int
    last_error: str | None


def _active() -> Any:
    return jobs.c.state.in_(JobState.ACTIVE)


def _row(row: Any) -> JobRow:
    return JobRow(
        id=int(row.id),
        kind=str(row.kind),
        state=str(row.state),
        trigger=str(row.trigger),
        attempts=int(row.attempts),
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        next_run_at=row.next_run_at,
        customers=int(row.customers),
        orders=int(row.orders),
        last_error=row.last_error,
    )


async def enqueue(
    session: AsyncSession,
    shop_id: int,
    kind: str,
    *,
    trigger: str,
    now: datetime | None = None,
    unless_created_since: datetime | None = None,
) -> bool:
    """Queue a job unless the shop has an active one (or, with ``unless_created_since``, any
    job created since then). Returns whether a job was queued."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    moment = now or utc_now()
    values = {
        "shop_id": shop_id,
        "kind": kind,
        "state": JobState.QUEUED,
        "trigger": trigger,
        "attempts": 0,
        "next_run_at": moment,
        "created_at": moment,
        "customers": 0,
        "orders": 0,
    }
    conditions = [
        ~sa.exists().where(jobs.c.shop_id == shop_id, _active()),
    ]
    if unless_created_since is not None:
        conditions.append(
            ~sa.exists().where(jobs.c.shop_id == shop_id, jobs.c.created_at > unless_created_since)
        )
    dialect = dialect_of(session)
    # PostgreSQL cannot infer the type of a bare parameter in a SELECT list: cast each one.
    source = sa.select(
        *(
            sa.cast(sa.literal(value, type_=jobs.c[name].type), jobs.c[name].type)
            if dialect == "postgresql"
            else sa.literal(value, type_=jobs.c[name].type)
            for name, value in values.items()
        )
    )
    statement = (
        dialect_insert(dialect, jobs)
        .from_select(list(values), source.where(*conditions))
        .on_conflict_do_nothing()
    )
    result = await session.execute(statement)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def claim(
    session: AsyncSession, owner: str, *, lease_seconds: float, now: datetime | None = None
) -> ClaimedJob | None:
    """The next due job (queued, or running under an expired lease), now leased to ``owner``."""
    moment = now or utc_now()
    query = (
        sa.select(jobs.c.id, jobs.c.shop_id, jobs.c.kind, jobs.c.attempts, jobs.c.created_at, shops.c.domain)
        .join(shops, shops.c.id == jobs.c.shop_id)
        .where(
            _active(),
            jobs.c.next_run_at <= moment,
            sa.or_(jobs.c.lease_expires_at.is_(None), jobs.c.lease_expires_at < moment),
        )
        .order_by(jobs.c.next_run_at, jobs.c.id)
        .limit(1)
    )
    if dialect_of(session) == "postgresql":
        query = query.with_for_update(of=jobs, skip_locked=True)
    row = (await session.execute(query)).first()
    if row is None:
        return None
    await session.execute(
        sa.update(jobs)
        .where(jobs.c.id == row.id)
        .values(
            state=JobState.RUNNING,
            lease_owner=owner,
            lease_expires_at=moment + timedelta(seconds=lease_seconds),
            started_at=sa.func.coalesce(jobs.c.started_at, moment),
        )
    )
    return ClaimedJob(
        id=int(row.id),
        shop_id=int(row.shop_id),
        shop=str(row.domain),
        kind=str(row.kind),
        attempts=int(row.attempts),
        created_at=row.created_at,
    )


def _held(job_id: int, owner: str) -> Any:
    return sa.and_(jobs.c.id == job_id, jobs.c.lease_owner == owner, jobs.c.state == JobState.RUNNING)


async def heartbeat(
    session: AsyncSession, job_id: int, owner: str, *, lease_seconds: float, now: datetime | None = None
) -> bool:
    """Renew the lease; False when the job is no longer this owner's (cancelled, taken over)."""
    moment = now or utc_now()
    result = await session.execute(
        sa.update(jobs)
        .where(_held(job_id, owner))
        .values(lease_expires_at=moment + timedelta(seconds=lease_seconds))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def finish(session: AsyncSession, job_id: int, owner: str, *, customers: int, orders: int) -> bool:
    result = await session.execute(
        sa.update(jobs)
        .where(_held(job_id, owner))
        .values(
            state=JobState.DONE,
            finished_at=utc_now(),
            lease_owner=None,
            lease_expires_at=None,
            customers=customers,
            orders=orders,
            last_error=None,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def fail(
    session: AsyncSession,
    job_id: int,
    owner: str,
    error: str,
    *,
    retry_at: datetime | None,
    customers: int = 0,
    orders: int = 0,
) -> bool:
    """Record a failed attempt: queued again at ``retry_at``, or ``failed`` for good (None)."""
    values: dict[str, Any] = {
        "lease_owner": None,
        "lease_expires_at": None,
        "attempts": jobs.c.attempts + 1,
        "last_error": error[:MAX_ERROR_LENGTH],
        "customers": customers,
        "orders": orders,
    }
    if retry_at is None:
        values.update(state=JobState.FAILED, finished_at=utc_now())
    else:
        values.update(state=JobState.QUEUED, next_run_at=retry_at)
    result = await session.execute(sa.update(jobs).where(_held(job_id, owner)).values(**values))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release(session: AsyncSession, job_id: int, owner: str) -> None:
    """Give a job back at once (the worker is stopping): another worker resumes it."""
    await session.execute(
        sa.update(jobs)
        .where(_held(job_id, owner))
        .values(state=JobState.QUEUED, lease_owner=None, lease_expires_at=None, next_run_at=utc_now())
    )


async def cancel_for_shop(session: AsyncSession, shop_id: int, reason: str) -> int:
    """Stop the shop's active job (``app/uninstalled``); its worker notices at its next heartbeat."""
    result = await session.execute(
        sa.update(jobs)
        .where(jobs.c.shop_id == shop_id, _active())
        .values(
            state=JobState.CANCELLED,
            finished_at=utc_now(),
            lease_owner=None,
            lease_expires_at=None,
            last_error=reason[:MAX_ERROR_LENGTH],
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def active(session: AsyncSession, shop_id: int) -> JobRow | None:
    row = (await session.execute(sa.select(jobs).where(jobs.c.shop_id == shop_id, _active()))).first()
    return None if row is None else _row(row)


async def latest(session: AsyncSession, shop_id: int, kind: str | None = None) -> JobRow | None:
    query = sa.select(jobs).where(jobs.c.shop_id == shop_id)
    if kind is not None:
        query = query.where(jobs.c.kind == kind)
    row = (await session.execute(query.order_by(jobs.c.id.desc()).limit(1))).first()
    return None if row is None else _row(row)


async def last_finished(session: AsyncSession, shop_id: int, kind: str) -> datetime | None:
    """When the shop's last successful job of ``kind`` finished."""
    found: datetime | None = await session.scalar(
        sa.select(sa.func.max(jobs.c.finished_at)).where(
            jobs.c.shop_id == shop_id, jobs.c.kind == kind, jobs.c.state == JobState.DONE
        )
    )
    return found


async def take_over(
    session: AsyncSession,
    shop_id: int,
    kind: str,
    owner: str,
    *,
    lease_seconds: float,
    trigger: str,
) -> tuple[ClaimedJob | None, JobRow | None]:
    """For ``tierline sync``: lease the shop's active job of ``kind`` (queued, or running under an
    expired lease) or a new one. Returns ``(job, None)``, or ``(None, blocking job)`` when a worker
    holds a live lease or the active job is of another kind."""
    now = utc_now()
    current = await active(session, shop_id)
    if current is None:
        await enqueue(session, shop_id, kind, trigger=trigger, now=now)
        current = await active(session, shop_id)
        if current is None:  # pragma: no cover - inserted above, or by a concurrent transaction
            return None, None
    lease = await session.scalar(sa.select(jobs.c.lease_expires_at).where(jobs.c.id == current.id))
    if current.kind != kind or (lease is not None and lease >= now):
        return None, current
    domain = await session.scalar(sa.select(shops.c.domain).where(shops.c.id == shop_id))
    await session.execute(
        sa.update(jobs)
        .where(jobs.c.id == current.id)
        .values(
            state=JobState.RUNNING,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=sa.func.coalesce(jobs.c.started_at, now),
            next_run_at=now,
        )
    )
    return ClaimedJob(current.id, shop_id, str(domain), kind, current.attempts, current.created_at), None


async def queue_after_install(session: AsyncSession, shop_id: int, *, reinstall: bool) -> str | None:
    """What a new token starts: the first backfill (on install and on reinstall), or the job that
    failed for want of a token. Returns the kind queued, if any."""
    last_synced_at = await session.scalar(sa.select(shops.c.last_synced_at).where(shops.c.id == shop_id))
    if reinstall or last_synced_at is None:
        queued = await enqueue(session, shop_id, BACKFILL, trigger="reinstall" if reinstall else "install")
        return BACKFILL if queued else None
    previous = await latest(session, shop_id)
    if previous is not None and previous.state == JobState.FAILED:
        queued = await enqueue(session, shop_id, previous.kind, trigger="retry")
        return previous.kind if queued else None
    return None


async def schedule(session: AsyncSession, *, every: timedelta, now: datetime | None = None) -> int:
    """Queue what is due for every installed shop with a token: a reconciliation when the last
    sync started more than ``every`` ago, or the first backfill when none has completed. A shop
    with a job created within ``every`` (a failed one included) waits for the next period.

    Several workers may call this at once: on PostgreSQL one holds a transaction-level advisory
    lock and the others skip the tick; each insert also re-checks, in the same statement, that
    the shop has no active or recent job. Returns the number of jobs queued."""
    if dialect_of(session) == "postgresql":
        locked = await session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(SCHEDULER_LOCK_KEY)))
        if not locked:
            return 0
    moment = now or utc_now()
    cutoff = moment - every
    candidates = await session.execute(
        sa.select(shops.c.id, shops.c.last_synced_at).where(
            shops.c.uninstalled_at.is_(None),
            shops.c.access_token_enc.is_not(None),
            sa.or_(shops.c.last_synced_at.is_(None), shops.c.last_synced_at < cutoff),
            ~sa.exists().where(jobs.c.shop_id == shops.c.id, sa.or_(_active(), jobs.c.created_at > cutoff)),
        )
    )
    queued = 0
    for row in candidates.all():
        kind = BACKFILL if row.last_synced_at is None else RECONCILE
        if await enqueue(
            session, int(row.id), kind, trigger="schedule", now=moment, unless_created_since=cutoff
        ):
            queued += 1
    return queued


@dataclass(frozen=True, slots=True)
class SyncView:
    """What ``GET /api/shop`` and the pages say about syncing (docs/shopify-app.md).

    ``state``, ``started_at``, ``finished_at``, ``last_error``, ``customers`` and ``orders``
    describe the shop's latest job (the first backfill, then each reconciliation); while it runs,
    the counts are the records committed so far. ``kind`` is that job's kind.
    """

    state: str
    kind: str | None
    started_at: datetime | None
    finished_at: datetime | None
    customers: int
    orders: int
    last_error: str | None
    last_reconciled_at: datetime | None
    next_run_at: datetime | None
    #: The last completed backfill (the shop's history), for the pages.
    backfilled_at: datetime | None
    backfilled_customers: int
    backfilled_orders: int


#: Job states as ``sync.state`` shows them (a job stopped by an uninstall shows as failed).
_PUBLIC_STATE = {
    JobState.QUEUED: "queued",
    JobState.RUNNING: "running",
    JobState.DONE: "done",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "failed",
}


async def sync_view(session: AsyncSession, shop_id: int) -> SyncView:
    job = await latest(session, shop_id)
    last_reconciled_at = await last_finished(session, shop_id, RECONCILE)
    done = (
        await session.execute(
            sa.select(jobs.c.finished_at, jobs.c.customers, jobs.c.orders)
            .where(jobs.c.shop_id == shop_id, jobs.c.kind == BACKFILL, jobs.c.state == JobState.DONE)
            .order_by(jobs.c.id.desc())
            .limit(1)
        )
    ).first()
    backfilled = (
        (done.finished_at, int(done.customers), int(done.orders)) if done is not None else (None, 0, 0)
    )
    if job is None:
        return SyncView("never", None, None, None, 0, 0, None, last_reconciled_at, None, *backfilled)
    customers, orders = job.customers, job.orders
    if job.state in JobState.ACTIVE:
        raw = await session.scalar(sa.select(shops.c.sync_state).where(shops.c.id == shop_id))
        state: dict[str, Any] = raw if isinstance(raw, dict) else {}
        counts = state.get("counts")
        if isinstance(counts, dict) and state.get("mode") == (
            "bulk" if job.kind == BACKFILL else "reconcile"
        ):
            customers = int(counts.get("customers") or 0)
            orders = int(counts.get("orders") or 0)
    return SyncView(
        state=_PUBLIC_STATE.get(job.state, job.state),
        kind=job.kind,
        started_at=job.started_at,
        finished_at=job.finished_at,
        customers=customers,
        orders=orders,
        last_error=job.last_error,
        last_reconciled_at=last_reconciled_at,
        next_run_at=job.next_run_at if job.state == JobState.QUEUED else None,
        backfilled_at=backfilled[0],
        backfilled_customers=backfilled[1],
        backfilled_orders=backfilled[2],
    )


async def retry(session: AsyncSession, shop_id: int) -> str | None:
    """The merchant's "retry" / "sync now": the kind queued, or None when a job is active."""
    if await active(session, shop_id) is not None:
        return None
    previous = await latest(session, shop_id)
    last_synced_at = await session.scalar(sa.select(shops.c.last_synced_at).where(shops.c.id == shop_id))
    if previous is not None and previous.state in (JobState.FAILED, JobState.CANCELLED):
        kind = previous.kind
    else:
        kind = BACKFILL if last_synced_at is None else RECONCILE
    queued = await enqueue(session, shop_id, kind, trigger="retry")
    return kind if queued else None
