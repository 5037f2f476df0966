"""The job runner: backfills and reconciliations as durable jobs, run beside the inbox worker.

:class:`JobRunner` lives in every worker process (``serve`` with ``TIERLINE_WORKER=inline``, and
``tierline worker``). It

* **schedules**: about once a minute it queues a reconciliation for every installed shop whose
  last sync started more than ``TIERLINE_RECONCILE_HOURS`` ago (or the first backfill, for an
  installed shop that has none); several workers may do so at once without duplicates
  (:func:`service.domain.jobs.schedule`);
* **claims** due jobs under a lease (``TIERLINE_JOB_LEASE``), at most
  ``TIERLINE_JOB_CONCURRENCY`` at a time, and runs each with :class:`service.sync.ShopSync`,
  which resumes from ``shops.sync_state`` (a bulk operation already running at Shopify is polled
  again, never started twice);
* **renews** each lease every third of its length; when renewal fails (``app/uninstalled``
  cancelled the job, or the lease expired and another worker took it) the job is stopped;
* **settles** each job: done; queued again with back-off after a transient failure (network,
  Shopify 5xx, throttling, a failed bulk operation); failed for good when only the merchant can
  help (no usable token, scopes denied) or after :data:`MAX_ATTEMPTS`.

A worker killed at any instant leaves its job ``running`` under a lease that expires; another
worker (or the restarted one) claims it then and resumes after the last committed batch. On
``stop()`` (SIGTERM) running jobs are cancelled at once and handed back for another worker.
No database transaction is open while Shopify is called (docs/architecture.md, "Rules of the
code").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.background import BackgroundLoop
from service.config import Settings
from service.db import session_scope
from service.domain import jobs
from service.sync import (
    DEFAULT_BATCH_SIZE,
    AccessDeniedError,
    MessageFn,
    NotInstalledError,
    ProgressFn,
    ShopSync,
    SyncError,
    SyncReport,
)
from service.types import utc_now
from shopify_client import ShopifyError, ShopifyHTTPError

logger = logging.getLogger(__name__)

#: Attempts of one job before it is ``failed`` (the scheduler tries again a period later).
MAX_ATTEMPTS = 5
#: Back-off after a failed attempt: 1, 2, 4, 8 minutes (at most an hour).
RETRY_BASE_SECONDS = 60.0
RETRY_MAX_SECONDS = 3600.0
#: How often the scheduler looks for shops due a reconciliation.
SCHEDULE_INTERVAL_SECONDS = 60.0


def retry_delay(attempts: int) -> timedelta:
    """The wait before attempt ``attempts + 1``."""
    return timedelta(seconds=min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one run of a job ended: ``done``, ``retry``, ``failed``, ``lost`` or ``released``."""

    state: str
    error: str | None = None
    report: SyncReport | None = None


class JobRunner(BackgroundLoop):
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        settings: Settings,
        *,
        write_gate: asyncio.Lock | None = None,
        owner: str | None = None,
    ) -> None:
        super().__init__(sessionmaker, write_gate=write_gate, owner=owner)
        self._http = http
        self._settings = settings
        self._lease = settings.job_lease_seconds
        self._poll = settings.worker_poll_seconds
        self._tasks: dict[int, asyncio.Task[Outcome]] = {}
        #: The sync work of each running job (cancelled on stop, so the job is handed back).
        self._work: dict[int, asyncio.Task[SyncReport]] = {}
        self._last_schedule = 0.0

    # --- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Schedule, claim and run jobs until :meth:`stop`; survive database outages."""
        logger.info("jobs.started", extra={"owner": self.owner})
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    if time.monotonic() - self._last_schedule >= SCHEDULE_INTERVAL_SECONDS:
                        self._last_schedule = time.monotonic()
                        await self.schedule()
                    await self._start_due()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("jobs.loop_error")
                    await self._sleep(self._poll * 5)
                    continue
                await self._sleep(self._poll)
        finally:
            await self._stop_tasks()
            logger.info("jobs.stopped", extra={"owner": self.owner})

    async def schedule(self) -> int:
        async with self._write() as session:
            queued = await jobs.schedule(session, every=timedelta(hours=self._settings.reconcile_hours))
        if queued:
            logger.info("jobs.scheduled", extra={"count": queued})
        return queued

    async def _start_due(self) -> None:
        for job_id in [job_id for job_id, task in self._tasks.items() if task.done()]:
            self._tasks.pop(job_id)
        while len(self._tasks) < self._settings.job_concurrency and not self._stopping.is_set():
            job = await self._claim()
            if job is None:
                return
            task = asyncio.create_task(self.run_job(job), name=f"tierline-job-{job.id}")
            task.add_done_callback(lambda _task: self._wake.set())
            self._tasks[job.id] = task

    async def drain(self) -> list[Outcome]:
        """Run due jobs one after another until none is due (tests, ``tierline worker --drain``)."""
        outcomes = []
        while (job := await self._claim()) is not None:
            outcomes.append(await self.run_job(job))
        return outcomes

    async def _claim(self) -> jobs.ClaimedJob | None:
        async with self._write() as session:
            return await jobs.claim(session, self.owner, lease_seconds=self._lease)

    # --- one job --------------------------------------------------------------------------------

    async def run_job(
        self,
        job: jobs.ClaimedJob,
        *,
        progress: ProgressFn | None = None,
        message: MessageFn | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        exact: bool = False,
    ) -> Outcome:
        """Run a claimed job under its lease and settle it.

        ``exact`` (``tierline sync``): a reconciliation refuses to run instead of finishing an
        unfinished backfill first. ``progress``/``message`` report to the operator's terminal.
        """
        log = {"shop": job.shop, "job": job.id, "kind": job.kind}
        logger.info("jobs.run", extra=log)
        runner = ShopSync(
            self._sessionmaker,
            self._http,
            self._settings,
            job.shop,
            batch_size=batch_size,
            poll_interval=self._settings.bulk_poll_seconds,
            progress=progress,
            message=message,
            write_gate=self._gate,
        )
        work = asyncio.create_task(self._sync(job, runner, exact=exact), name=f"tierline-sync-{job.id}")
        self._work[job.id] = work
        keeper = asyncio.create_task(self._keep_lease(job, work), name=f"tierline-lease-{job.id}")
        try:
            outcome = await self._outcome(job, work)
        finally:
            self._work.pop(job.id, None)
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        await self._settle(job, outcome)
        logger.info(
            "jobs.settled", extra=log | {"outcome": outcome.state, "error": (outcome.error or "")[:200]}
        )
        return outcome

    async def _sync(self, job: jobs.ClaimedJob, runner: ShopSync, *, exact: bool) -> SyncReport:
        try:
            done = await runner.completed_since(job.created_at)
            if done is not None:  # an earlier attempt finished the work and was cut off before settling
                return done
            if exact:
                return await (runner.reconcile() if job.kind == jobs.RECONCILE else runner.backfill())
            return await runner.run(job.kind)
        except ShopifyHTTPError as exc:
            if exc.status in (401, 403):
                # Shopify no longer accepts the token (revoked, or the app was uninstalled and
                # the webhook is still on its way): forget it; the next embedded load exchanges.
                await runner.access.forget_token(f"the Admin API refused the token (HTTP {exc.status})")
                raise NotInstalledError(
                    f"Shopify refused tierline's access token for {job.shop} (HTTP {exc.status}): "
                    "the merchant must open the app in the Shopify admin again"
                ) from exc
            raise

    async def _outcome(self, job: jobs.ClaimedJob, work: asyncio.Task[SyncReport]) -> Outcome:
        try:
            report = await work
        except asyncio.CancelledError:
            if self._stopping.is_set():
                return Outcome("released")
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            return Outcome("lost")
        except (NotInstalledError, AccessDeniedError) as exc:
            return Outcome("failed", str(exc))
        except (SyncError, ShopifyError) as exc:
            return Outcome("retry", f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            logger.exception("jobs.error", extra={"shop": job.shop, "job": job.id})
            return Outcome("retry", f"{type(exc).__name__}: {exc}")
        return Outcome("done", report=report)

    async def _keep_lease(self, job: jobs.ClaimedJob, work: asyncio.Task[SyncReport]) -> None:
        """Renew the lease; cancel the work when it is lost (uninstalled, or taken over)."""
        while not work.done():
            await asyncio.sleep(self._lease / 3)
            try:
                async with self._write() as session:
                    held = await jobs.heartbeat(session, job.id, self.owner, lease_seconds=self._lease)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning(
                    "jobs.heartbeat_failed", extra={"shop": job.shop, "job": job.id}, exc_info=True
                )
                continue
            if not held:
                logger.info("jobs.lease_lost", extra={"shop": job.shop, "job": job.id})
                work.cancel()
                return

    async def _settle(self, job: jobs.ClaimedJob, outcome: Outcome) -> None:
        if outcome.state == "lost":
            return
        counts = await self._counts(job.shop_id)
        async with self._write() as session:
            if outcome.state == "done" and outcome.report is not None:
                totals = outcome.report.totals
                await jobs.finish(
                    session,
                    job.id,
                    self.owner,
                    customers=totals.get("customers", 0),
                    orders=totals.get("orders", 0),
                )
            elif outcome.state == "released":
                await jobs.release(session, job.id, self.owner)
            else:
                retry_at = (
                    utc_now() + retry_delay(job.attempts + 1)
                    if outcome.state == "retry" and job.attempts + 1 < MAX_ATTEMPTS
                    else None
                )
                await jobs.fail(
                    session,
                    job.id,
                    self.owner,
                    outcome.error or "failed",
                    retry_at=retry_at,
                    customers=counts.get("customers", 0),
                    orders=counts.get("orders", 0),
                )

    async def _counts(self, shop_id: int) -> dict[str, int]:
        from service.domain import sync_state

        async with session_scope(self._sessionmaker, readonly=True) as session:
            status = await sync_state.get(session, shop_id)
        raw = (status.state.get("counts") if status is not None else None) or {}
        return {key: int(value) for key, value in raw.items() if isinstance(value, int)}

    async def _stop_tasks(self) -> None:
        """Stop the running jobs' work; each job is then handed back (``release``)."""
        for work in list(self._work.values()):
            work.cancel()
        tasks = list(self._tasks.values())
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    # --- helpers --------------------------------------------------------------------------------
