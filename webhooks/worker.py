"""The inbox worker: claim pending deliveries, apply each atomically, settle, retry, prune.

A batch is one transaction, and "processed" commits together with the effects, so nothing is
applied twice; a worker killed at any instant rolls the whole batch back and every delivery in
it is claimed again later.

A batch is first applied whole: no savepoints, and the customers' figures and tier histories left
to one set-based settlement before the commit (:mod:`service.domain.deferred`). If any delivery
raises, that attempt is rolled back and the batch is claimed again and applied one savepoint per
delivery, effects at once, so the delivery that raised is retried alone and leaves no partial
writes while the others apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.db import session_scope
from service.domain import compliance, inbox, stats
from service.domain.deferred import DeferredFigures
from service.domain.settings import ShopSettings
from service.metrics import BATCH_FALLBACKS
from service.models import DeliveryStatus
from service.types import utc_now
from webhooks import batch
from webhooks.router import DeliveryContext, TopicRouter
from webhooks.router import PermanentDeliveryError as PermanentDeliveryError  # re-exported

logger = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 600
#: Rows deleted per pruning transaction, and transactions per pruning round (up to 1 M rows).
PRUNE_BATCH = 5000
PRUNE_MAX_BATCHES = 200
#: SQLite has one writer: keep its batches short so intake is never blocked for long.
SQLITE_MAX_BATCH = 10
#: PostgreSQL's deadlock_detected and serialization_failure: the transaction lost a race with
#: another worker's and was rolled back; the batch is claimed again at once, a few times.
CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})
MAX_CONFLICT_RETRIES = 3


class _BatchFailed(Exception):
    """A handler raised while a batch was applied without savepoints (``__cause__`` says what)."""


async def _guarded(work: Awaitable[object]) -> None:
    """Await ``work`` in a batched attempt: a lost connection propagates as it is (the batch is
    abandoned and claimed again later); any other exception becomes ``_BatchFailed``."""
    try:
        await work
    except (sa.exc.OperationalError, sa.exc.InterfaceError):
        raise
    except Exception as exc:
        raise _BatchFailed from exc


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "invalid payload: " + "; ".join(parts)


@dataclass(slots=True)
class BatchResult:
    processed: int = 0
    ignored: int = 0
    failed: int = 0
    retried: int = 0
    dead: int = 0
    durations: list[float] = field(default_factory=list)
    #: (topic, outcome, seconds) per delivery, reported to ``on_settled`` after the commit.
    settled: list[tuple[str, str, float]] = field(default_factory=list)

    def count(self, outcome: str) -> None:
        name = "retried" if outcome == DeliveryStatus.PENDING else outcome
        setattr(self, name, getattr(self, name) + 1)

    @property
    def total(self) -> int:
        return self.processed + self.ignored + self.failed + self.retried + self.dead


OnSettled = Callable[[str, str, float], None]
#: (delivery id, shop id, customer ids, order ids) of each parsed delivery of a batch: after it
#: is applied, a body that carries data of a redacted customer or order is redacted too.
Mentions = list[tuple[int, int, frozenset[int], frozenset[int]]]


def _context(
    session: AsyncSession,
    delivery: inbox.ClaimedDelivery,
    settings_cache: dict[int, ShopSettings],
    deferred: DeferredFigures | None,
) -> DeliveryContext:
    return DeliveryContext(
        session=session,
        delivery_id=delivery.id,
        shop_id=delivery.shop_id,
        shop_domain=delivery.shop_domain,
        webhook_id=delivery.webhook_id,
        topic=delivery.topic,
        occurred_at=delivery.triggered_at or delivery.received_at,
        _settings_cache=settings_cache,
        deferred=deferred,
    )


def _log(delivery: inbox.ClaimedDelivery) -> dict[str, str]:
    return {"webhook_id": delivery.webhook_id, "topic": delivery.topic, "shop": delivery.shop_domain}


def _mentions(item: batch.Parsed) -> tuple[int, int, frozenset[int], frozenset[int]]:
    return (item.delivery.id, item.delivery.shop_id, *item.payload.mentions())  # type: ignore[attr-defined]


def _applied(steps: list[batch.Step]) -> Iterator[batch.Parsed]:
    """The deliveries a handler will apply (runs and singles, not rejected or ignored ones)."""
    for step in steps:
        if isinstance(step, batch.Run):
            yield from step.items
        elif isinstance(step, batch.Single):
            yield step.item


class InboxWorker:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        router: TopicRouter,
        settings: Settings,
        *,
        on_settled: OnSettled | None = None,
        write_gate: asyncio.Lock | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._router = router
        self._max_attempts = settings.max_attempts
        self._retention = timedelta(days=settings.retention_days)
        self._poll = settings.worker_poll_seconds
        batch = settings.worker_batch
        self._batch = min(batch, SQLITE_MAX_BATCH) if settings.is_sqlite else batch
        #: Batches in flight at once: one loop each. While one waits for PostgreSQL, the other
        #: computes; they are as independent as two worker processes (SKIP LOCKED claims,
        #: per-customer locks for the figures, conflicts claimed again).
        self.loops = 1 if settings.is_sqlite else settings.worker_concurrency
        self._on_settled = on_settled
        self._write_gate = write_gate
        self.wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._last_prune = 0.0

    def notify(self) -> None:
        """Called after intake commits a new delivery: apply it without waiting for the poll."""
        self.wake.set()

    def stop(self) -> None:
        """Finish the current batch, then return from :meth:`run`."""
        self._stopping.set()
        self.wake.set()

    async def run_once(self) -> BatchResult:
        """Claim and apply one batch. Returns what happened to each delivery (reported to
        ``on_settled`` only after the batch committed)."""
        result = await self._run_batch()
        if self._on_settled is not None:
            for topic, outcome, elapsed in result.settled:
                self._on_settled(topic, outcome, elapsed)
        return result

    async def _run_batch(self) -> BatchResult:
        gate = self._write_gate or contextlib.nullcontext()
        async with gate:
            conflicts = 0
            while True:
                try:
                    return await self._claim_and_apply()
                except sa.exc.DBAPIError as exc:
                    # Another worker's batch held rows this one needed, and PostgreSQL broke the
                    # deadlock by aborting this transaction: nothing was applied, claim again now.
                    code = getattr(exc.orig, "sqlstate", None)
                    conflicts += 1
                    if code not in CONFLICT_SQLSTATES or conflicts > MAX_CONFLICT_RETRIES:
                        raise
                    logger.info("worker.batch_conflict", extra={"error": code, "attempts": conflicts})

    async def _claim_and_apply(self) -> BatchResult:
        try:
            return await self._attempt(batched=True)
        except _BatchFailed as failed:
            # Something in the batch raised: it was rolled back whole. Claim again, one
            # savepoint per delivery, so the culprit is retried alone and the rest applies.
            BATCH_FALLBACKS.inc()
            logger.info("worker.batch_fallback", extra={"error": type(failed.__cause__).__name__})
            return await self._attempt(batched=False)

    async def _attempt(self, *, batched: bool) -> BatchResult:
        """One transaction over one claimed batch.

        ``batched``: no savepoints, and figures and tier histories are left to a
        :class:`DeferredFigures` settled once before the commit; any exception other than a lost
        connection raises ``_BatchFailed`` (after the rollback). Otherwise: each delivery in its
        own savepoint with its effects applied at once, and a handler's exception schedules a retry
        of that delivery only.
        """
        result = BatchResult()
        settings_cache: dict[int, ShopSettings] = {}
        deferred = DeferredFigures() if batched else None
        async with session_scope(self._sessionmaker) as session:
            claimed = await inbox.claim_batch(session, self._batch)
            settled: dict[str, list[int]] = {DeliveryStatus.PROCESSED: [], DeliveryStatus.IGNORED: []}

            def record(delivery: inbox.ClaimedDelivery, outcome: str, elapsed: float) -> None:
                result.durations.append(elapsed)
                if outcome in settled:
                    settled[outcome].append(delivery.id)
                result.count(outcome)
                result.settled.append((delivery.topic, outcome, elapsed))

            steps = list(batch.plan(claimed, self._router, runs=batched))
            mentions: Mentions = [_mentions(item) for item in _applied(steps)]
            await stats.lock_orders(
                session, ((shop, order) for _, shop, _, orders in mentions for order in orders)
            )
            for step in steps:
                if isinstance(step, batch.Ignored):
                    logger.info("webhook.ignored", extra=_log(step.delivery))
                    record(step.delivery, DeliveryStatus.IGNORED, 0.0)
                elif isinstance(step, batch.Rejected):
                    outcome = await self._fail(session, step.delivery, describe_validation_error(step.error))
                    record(step.delivery, outcome, step.seconds)
                elif isinstance(step, batch.Run):
                    if deferred is None:  # runs are planned for batched attempts only
                        raise RuntimeError("a run planned for an attempt without a batch")
                    await self._apply_run(session, step, settings_cache, deferred, record)
                else:
                    started = time.perf_counter()
                    outcome = await self._apply(session, step, settings_cache, deferred)
                    record(step.item.delivery, outcome, step.item.seconds + time.perf_counter() - started)
            if deferred:
                await _guarded(deferred.settle(session))
            processed = set(settled[DeliveryStatus.PROCESSED])
            await compliance.redact_later_bodies(session, (m for m in mentions if m[0] in processed))
            for status, ids in settled.items():
                await inbox.settle(session, ids, status)
        return result

    async def _apply_run(
        self,
        session: AsyncSession,
        run: batch.Run,
        settings_cache: dict[int, ShopSettings],
        deferred: DeferredFigures,
        record: Callable[[inbox.ClaimedDelivery, str, float], None],
    ) -> None:
        """Consecutive deliveries a set-based applier takes together (batched attempts only)."""
        items = [
            (_context(session, item.delivery, settings_cache, deferred), item.payload) for item in run.items
        ]
        started = time.perf_counter()
        await _guarded(run.kind.apply(items, deferred))
        share = (time.perf_counter() - started) / len(run.items)
        for item in run.items:
            logger.debug("webhook.processed", extra=_log(item.delivery))
            record(item.delivery, DeliveryStatus.PROCESSED, item.seconds + share)

    async def _apply(
        self,
        session: AsyncSession,
        single: batch.Single,
        settings_cache: dict[int, ShopSettings],
        deferred: DeferredFigures | None,
    ) -> str:
        """One delivery for its topic's handler. Batched (``deferred`` given): figures left to the
        batch when the topic allows, else what is owed is settled first. Otherwise in a savepoint
        of its own, effects at once, its failure retried alone."""
        delivery, payload = single.item.delivery, single.item.payload
        log = _log(delivery)
        ctx = _context(session, delivery, settings_cache, deferred if single.deferred else None)
        if deferred is not None:
            if not single.deferred and deferred:
                await _guarded(deferred.settle(session))  # what earlier deliveries owe comes first
            await _guarded(single.item.route.handler(ctx, payload))
            logger.debug("webhook.processed", extra=log)
            return DeliveryStatus.PROCESSED
        try:
            async with session.begin_nested():
                await single.item.route.handler(ctx, payload)
        except (PermanentDeliveryError, sa.exc.DataError) as exc:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:500]}"
        except (sa.exc.OperationalError, sa.exc.InterfaceError):
            raise  # the connection is gone: abandon the batch; it is claimed again later
        except Exception as exc:
            logger.warning("webhook.retry", extra=log | {"error": type(exc).__name__}, exc_info=True)
            return await inbox.schedule_retry(
                session, delivery, f"{type(exc).__name__}: {exc}", max_attempts=self._max_attempts
            )
        else:
            logger.debug("webhook.processed", extra=log)
            return DeliveryStatus.PROCESSED
        return await self._fail(session, delivery, reason)

    async def _fail(self, session: AsyncSession, delivery: inbox.ClaimedDelivery, reason: str) -> str:
        logger.info("webhook.failed", extra=_log(delivery) | {"reason": reason[:200]})
        await inbox.settle(session, [delivery.id], DeliveryStatus.FAILED, reason)
        return DeliveryStatus.FAILED

    async def drain(self, *, max_batches: int = 1_000_000) -> int:
        """Apply batches until nothing is due (tests, ``tierline worker --drain``), :attr:`loops`
        at a time. Returns the count."""
        if self.loops == 1:
            return await self._drain(max_batches)
        return sum(await asyncio.gather(*(self._drain(max_batches) for _ in range(self.loops))))

    async def _drain(self, max_batches: int) -> int:
        total = 0
        for _ in range(max_batches):
            result = await self.run_once()
            total += result.total
            if result.total == 0:
                break
        return total

    async def prune(self) -> int:
        """Delete settled deliveries past retention, :data:`PRUNE_BATCH` rows per transaction,
        until none is left (at most :data:`PRUNE_MAX_BATCHES` per call). One batch per call
        pruned 5,000 rows every 10 minutes, 720,000 a day: an inbox that receives more than that
        (8 deliveries/s on average) would grow for ever (docs/scaling.md)."""
        older_than = utc_now() - self._retention
        total = 0
        for _ in range(PRUNE_MAX_BATCHES):
            async with session_scope(self._sessionmaker) as session:
                pruned = await inbox.prune(session, older_than=older_than, batch=PRUNE_BATCH)
            total += pruned
            if pruned < PRUNE_BATCH:
                break
        return total

    async def run(self) -> None:
        """Apply deliveries until :meth:`stop`, :attr:`loops` batches at a time; survive database
        outages with a pause."""
        logger.info("worker.started", extra={"batch": self._batch, "loops": self.loops})
        await asyncio.gather(*(self._loop() for _ in range(self.loops)))
        logger.info("worker.stopped")

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            self.wake.clear()
            try:
                result = await self.run_once()
                if time.monotonic() - self._last_prune > PRUNE_INTERVAL_SECONDS:
                    self._last_prune = time.monotonic()
                    pruned = await self.prune()
                    if pruned:
                        logger.info("worker.pruned", extra={"count": pruned})
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("worker.batch_error")
                result = BatchResult()
                await self._sleep(self._poll * 5)
                continue
            if result.total == 0:
                await self._sleep(self._poll)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=seconds)
