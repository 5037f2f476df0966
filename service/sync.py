"""``tierline sync``: backfill a shop's customers and orders from the Admin API (docs/shopify-app.md).

A full sync runs one bulk operation per resource (customers, then orders), spools each JSONL
result to a temporary file (:class:`BulkResult`), nests children under their parents
(``parse_bulk_jsonl``, a batch at a time) and applies the records in transactions of
``batch_size`` through the same domain functions as the webhooks
(``upsert_customer``, ``apply_order``), so the ``updated_at`` guards, tombstones and customer stub
ranks hold whichever path a record takes.

Resuming: ``shops.sync_state`` keeps the phase, the bulk operation id, its result URL and how many
records are applied; that count commits with the records it counts. A rerun after a crash polls
the same bulk operation again (which also yields a fresh result URL), skips what was applied and
carries on; only an operation that failed or expired is started anew.

Reconciliation (``reconcile=True``): customers and orders updated since ``last_synced_at``, read
page by page with the search filter ``updated_at:>'…'``, applied the same way: for deliveries
Shopify never sent.

``last_synced_at`` becomes the time the run *started*: anything that changed while it ran is
picked up again by the next reconciliation (re-applying a record is harmless).

The Admin API token is the shop's stored offline token; when it is about to expire it is refreshed
through the token endpoint and the new pair is stored before it is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.crypto import TokenCipher
from service.db import session_scope
from service.domain import backfill, installs, shops, sync_state, writeback
from service.domain.customers import upsert_customer
from service.domain.orders import apply_order
from service.domain.records import CustomerSnapshot
from service.domain.settings import ShopSettings, get_shop_settings
from service.domain.shops import find_shop_id
from service.types import utc_now
from shopify_client import (
    AccessToken,
    AdminClient,
    BulkOperationError,
    BulkOperationResult,
    OAuthHTTPError,
    ShopifyError,
    UnknownBulkOperationError,
    UserErrorsError,
    download_jsonl,
    needs_refresh,
    parse_bulk_jsonl,
    refresh_access_token,
)

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], datetime]
#: ``progress(phase, done, total)``; ``total`` is 0 when unknown (reconciliation pages).
ProgressFn = Callable[[str, int, int], None]
MessageFn = Callable[[str], None]

PHASES = ("customers", "orders")
BULK_QUERIES = {"customers": backfill.CUSTOMERS_BULK_QUERY, "orders": backfill.ORDERS_BULK_QUERY}
PAGE_QUERIES = {"customers": backfill.CUSTOMERS_PAGE_QUERY, "orders": backfill.ORDERS_PAGE_QUERY}
DEFAULT_BATCH_SIZE = 500
#: SQLite has one writer: shorter transactions keep webhook intake answering while a sync runs.
SQLITE_MAX_BATCH_SIZE = 100
DEFAULT_POLL_SECONDS = 5.0
#: How long a run waits for one bulk operation (Shopify allows up to 10 days; rerun to wait more).
DEFAULT_BULK_TIMEOUT_SECONDS = 24 * 3600.0
#: Bulk operations one run starts for a phase before it gives up (FAILED, CANCELED, EXPIRED).
MAX_BULK_ATTEMPTS = 3
#: Bulk operations of a phase that ended in TIMEOUT before the phase is read page by page.
TIMEOUTS_BEFORE_PAGES = 2
#: ``bulkOperationRunQuery`` user error codes that mean "one is already running".
BUSY_CODES = frozenset({"OPERATION_IN_PROGRESS", "LIMIT_REACHED"})
#: Bulk operation states that will still produce a result.
LIVE_BULK_STATUSES = frozenset({"CREATED", "RUNNING", "COMPLETED"})


class SyncError(Exception):
    """A sync cannot proceed; the message says why and what to do."""


class NotInstalledError(SyncError):
    """The shop has no usable stored access token."""


class AccessDeniedError(SyncError):
    """Shopify denied the bulk query (``ACCESS_DENIED``): the grant lacks a scope."""


def _same_query(a: str | None, b: str) -> bool:
    return a is not None and " ".join(a.split()) == " ".join(b.split())


@asynccontextmanager
async def _write_scope(
    sessionmaker: async_sessionmaker[AsyncSession], gate: asyncio.Lock | None
) -> AsyncIterator[AsyncSession]:
    """A write transaction; on SQLite in ``serve``, taken in turn with intake and the inbox worker."""
    async with gate or contextlib.nullcontext(), session_scope(sessionmaker) as session:
        yield session


@dataclass(slots=True)
class SyncReport:
    shop: str
    mode: str
    customers: int = 0
    orders: int = 0
    skipped: int = 0
    #: Records of an interrupted run that this run did not apply again.
    resumed_after: int = 0
    synced_at: datetime | None = None
    #: Records handled per resource over the whole backfill (this run and any it resumed).
    totals: dict[str, int] = dataclasses.field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "customers": self.customers,
            "orders": self.orders,
            "skipped": self.skipped,
            "completedAt": _iso(utc_now()),
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class BulkResult:
    """A bulk operation's JSONL result spooled to a temporary file, with an index.

    Children follow their parents in the file, though not necessarily directly, so nothing can
    be applied before the whole file is read. Keeping every parsed object in memory would cost
    over 10 KB per order; the index costs about a hundred bytes per line. :meth:`records` reads
    back a slice of the top-level objects with their children (and grandchildren) and nests them
    with ``parse_bulk_jsonl``.
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()/__exit__
        self._size = 0
        self._spans: list[tuple[int, int]] = []
        self._roots: list[int] = []
        self._children: dict[int, list[int]] = {}
        self._line_of: dict[str, int] = {}
        #: Children seen before their parent (Shopify does not send these; tolerated anyway).
        self._orphans: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return len(self._roots)

    def __enter__(self) -> BulkResult:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def add(self, line: str) -> None:
        """Index and store one JSONL line."""
        number = len(self._spans)
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise BulkOperationError(f"line {number + 1} is not JSON") from exc
        if not isinstance(obj, dict):
            raise BulkOperationError(f"line {number + 1} is not a JSON object")
        data = line.encode()
        self._file.write(data)
        self._spans.append((self._size, len(data)))
        self._size += len(data)
        gid = obj.get("id")
        if isinstance(gid, str):
            self._line_of[gid] = number
            for orphan in self._orphans.pop(gid, []):
                self._children.setdefault(number, []).append(orphan)
        parent = obj.get("__parentId")
        if parent is None:
            self._roots.append(number)
        elif isinstance(parent, str) and parent in self._line_of:
            self._children.setdefault(self._line_of[parent], []).append(number)
        else:
            self._orphans.setdefault(str(parent), []).append(number)

    def finish(self) -> None:
        """Check that every child found its parent."""
        if self._orphans:
            raise BulkOperationError(f"parent {next(iter(self._orphans))} is not in the result")

    def records(self, start: int, stop: int) -> list[dict[str, Any]]:
        """Top-level objects ``start`` to ``stop`` (file order), children nested under them."""
        lines: list[str] = []
        for root in self._roots[start:stop]:
            family = [root]
            for number in family:  # grows while iterating: children, then grandchildren
                family.extend(self._children.get(number, ()))
            lines.extend(self._read(number) for number in family)
        return parse_bulk_jsonl(lines)

    def _read(self, number: int) -> str:
        offset, length = self._spans[number]
        self._file.seek(offset)
        text = self._file.read(length).decode()
        self._file.seek(self._size)
        return text


class ShopAccess:
    """A shop's Admin API access: its stored offline token, refreshed and stored before expiry."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        settings: Settings,
        shop: str,
        *,
        sleep: Sleep = asyncio.sleep,
        now: Clock = utc_now,
        write_gate: asyncio.Lock | None = None,
    ) -> None:
        self.shop = shop.lower()
        self._sessionmaker = sessionmaker
        self._http = http
        self._settings = settings
        self._cipher = TokenCipher(settings.tierline_encryption_key)
        self._sleep = sleep
        self._now = now
        self._gate = write_gate
        self._shop_id: int | None = None
        self._token: AccessToken | None = None

    @property
    def shop_id(self) -> int:
        if self._shop_id is None:
            raise RuntimeError("ShopAccess.open() has not run")
        return self._shop_id

    async def open(self) -> int:
        """Find the shop and its token; :class:`NotInstalledError` when there is none."""
        async with session_scope(self._sessionmaker) as session:
            shop_id = await find_shop_id(session, self.shop)
            try:
                token = None if shop_id is None else await installs.load_token(session, shop_id, self._cipher)
            except ValueError as exc:
                raise SyncError(
                    f"the stored access token of {self.shop} cannot be decrypted with "
                    "TIERLINE_ENCRYPTION_KEY (was the key changed?)"
                ) from exc
        if shop_id is None or token is None:
            install_url = f"{self._settings.shopify_app_url.rstrip('/')}/auth/install?shop={self.shop}"
            raise NotInstalledError(
                f"{self.shop} has no stored access token: tierline is not installed on it, or it was "
                f"uninstalled. Install it ({install_url}, or open the app in the Shopify admin), then retry"
            )
        self._shop_id, self._token = shop_id, token
        return shop_id

    def seconds_until_refresh(self) -> float | None:
        """Seconds until the token needs refreshing; None for a non-expiring token."""
        if self._token is None or self._token.expires_at is None:
            return None
        remaining = (self._token.expires_at - self._now()).total_seconds() - 300
        return max(0.0, remaining)

    async def forget_token(self, reason: str) -> None:
        """Shopify refuses the stored token: drop it, so the next embedded load exchanges anew."""
        if self._shop_id is None:
            return
        async with _write_scope(self._sessionmaker, self._gate) as session:
            await installs.forget_token(session, self._shop_id, reason)
        self._token = None
        logger.warning("sync.token_forgotten", extra={"shop": self.shop, "reason": reason[:200]})

    async def token(self) -> AccessToken:
        """The access token, refreshed first when it expires within five minutes."""
        if self._token is None:
            await self.open()
        token = self._token
        if token is None:  # pragma: no cover - open() either sets it or raises
            raise NotInstalledError(f"{self.shop} has no stored access token")
        now = self._now()
        if not needs_refresh(token, now):
            return token
        expired_refresh = token.refresh_token_expires_at is not None and token.refresh_token_expires_at <= now
        if token.refresh_token is None or expired_refresh:
            raise NotInstalledError(
                f"the access token of {self.shop} has expired and cannot be refreshed: "
                "open the app in the Shopify admin (token exchange) or install it again"
            )
        settings = self._settings
        try:
            fresh = await refresh_access_token(
                self._http,
                self.shop,
                settings.shopify_api_key,
                settings.shopify_api_secret,
                token.refresh_token,
                now=now,
                origin=settings.shopify_url,
            )
        except OAuthHTTPError as exc:
            if 400 <= exc.status < 500:
                # invalid_grant: the refresh token was revoked or has expired. Nothing but a new
                # grant helps: the next embedded load exchanges a session token for one.
                await self.forget_token(f"refresh refused (HTTP {exc.status})")
                raise NotInstalledError(
                    f"Shopify refused to refresh the access token of {self.shop} (HTTP {exc.status}): "
                    "the merchant must open the app in the Shopify admin again"
                ) from exc
            raise SyncError(f"Shopify refused to refresh the access token of {self.shop}: {exc}") from exc
        except ShopifyError as exc:
            raise SyncError(f"Shopify refused to refresh the access token of {self.shop}: {exc}") from exc
        async with _write_scope(self._sessionmaker, self._gate) as session:
            stored = await installs.store_refreshed_token(session, self.shop_id, fresh, self._cipher)
        if not stored:
            raise NotInstalledError(f"{self.shop} was uninstalled while syncing")
        if fresh.refresh_token is None:
            fresh = dataclasses.replace(
                fresh,
                refresh_token=token.refresh_token,
                refresh_token_expires_at=token.refresh_token_expires_at,
            )
        logger.info("sync.token_refreshed", extra={"shop": self.shop})
        self._token = fresh
        return fresh

    async def client(self, *, sleep: Sleep | None = None) -> AdminClient:
        """An Admin GraphQL client with a token valid for at least five more minutes."""
        token = await self.token()
        return AdminClient(
            self._http,
            self.shop,
            token.access_token,
            sleep=sleep or self._sleep,
            origin=self._settings.shopify_url,
        )


class ShopSync:
    """One run of ``tierline sync`` (or of a worker's sync job) for one shop."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        settings: Settings,
        shop: str,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        poll_interval: float = DEFAULT_POLL_SECONDS,
        bulk_timeout: float = DEFAULT_BULK_TIMEOUT_SECONDS,
        progress: ProgressFn | None = None,
        message: MessageFn | None = None,
        sleep: Sleep = asyncio.sleep,
        now: Clock = utc_now,
        write_gate: asyncio.Lock | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.access = ShopAccess(
            sessionmaker, http, settings, shop, sleep=sleep, now=now, write_gate=write_gate
        )
        self._sessionmaker = sessionmaker
        self._http = http
        self._settings = settings
        self._batch_size = min(batch_size, SQLITE_MAX_BATCH_SIZE) if settings.is_sqlite else batch_size
        self._poll_interval = poll_interval
        self._bulk_timeout = bulk_timeout
        self._progress = progress or (lambda _phase, _done, _total: None)
        self._message = message or (lambda _text: None)
        self._sleep = sleep
        self._now = now
        self._gate = write_gate

    @property
    def shop(self) -> str:
        return self.access.shop

    # --- entry points ---------------------------------------------------------------------------

    async def run(self, kind: str) -> SyncReport:
        """A worker's job: ``backfill``, or ``reconcile`` (which finishes an unfinished backfill
        first, and is a backfill for a shop never synced)."""
        if kind == "reconcile":
            shop_id = await self.access.open()
            status = await self._status(shop_id)
            if status.state.get("phase") not in PHASES and status.last_synced_at is not None:
                return await self.reconcile()
        return await self.backfill()

    async def completed_since(self, requested_at: datetime | None) -> SyncReport | None:
        """The report of a sync that started at or after ``requested_at`` and completed, if the
        shop has one and nothing is unfinished since; else None.

        A worker killed after its run completed but before its job was marked done leaves the
        job to be claimed again: this tells the next attempt that the work is done, instead of
        backfilling the shop a second time (with two more bulk operations)."""
        if requested_at is None:
            return None
        shop_id = await self.access.open()
        status = await self._status(shop_id)
        synced_at = status.last_synced_at
        if status.state.get("phase") in PHASES or synced_at is None or synced_at < requested_at:
            return None
        last = status.state.get("lastRun") or {}
        report = SyncReport(self.shop, str(last.get("mode") or "bulk"), synced_at=synced_at)
        report.customers = int(last.get("customers") or 0)
        report.orders = int(last.get("orders") or 0)
        report.totals = {"customers": report.customers, "orders": report.orders}
        self._message(f"{self.shop}: already synced by a run that started at {_iso(synced_at)}")
        return report

    async def backfill(self) -> SyncReport:
        """Every customer and order, through bulk operations; resumes an interrupted run."""
        shop_id = await self.access.open()
        status = await self._status(shop_id)
        await self._remember_details(shop_id)
        report = SyncReport(self.shop, "bulk")
        state = status.state
        started_at = _parse_iso(state.get("startedAt"))
        if state.get("mode") == "bulk" and state.get("phase") in PHASES and started_at is not None:
            self._message(
                f"resuming the backfill of {self.shop} at {state['phase']} "
                f"({int(state.get('applied') or 0)} records applied)"
            )
        else:
            started_at = self._now()
            state = {"mode": "bulk", "phase": PHASES[0], "startedAt": _iso(started_at), "applied": 0}
            await self._save(shop_id, state)
        for phase in PHASES[PHASES.index(state["phase"]) :]:
            state["phase"] = phase
            spool = await self._bulk_result(shop_id, phase, state)
            if spool is None:
                await self._page_phase(shop_id, phase, state, report)
            else:
                with spool as result:
                    await self._apply_phase(shop_id, phase, state, result, report)
            state = {
                "mode": "bulk",
                "phase": phase,
                "startedAt": state["startedAt"],
                "applied": 0,
                "counts": dict(state.get("counts") or {}),
            }
            following = PHASES.index(phase) + 1
            if following < len(PHASES):
                state["phase"] = PHASES[following]
                await self._save(shop_id, state)
        report.totals = {phase: int((state.get("counts") or {}).get(phase) or 0) for phase in PHASES}
        await self._finish(shop_id, started_at, report)
        return report

    async def reconcile(self) -> SyncReport:
        """Customers and orders updated since ``last_synced_at``, page by page."""
        shop_id = await self.access.open()
        status = await self._status(shop_id)
        if status.state.get("phase") in PHASES:
            raise SyncError(
                f"a backfill of {self.shop} is unfinished ({status.state.get('phase')}, "
                f"{int(status.state.get('applied') or 0)} records applied): "
                f"run `tierline sync --shop {self.shop}` to finish it first"
            )
        if status.last_synced_at is None:
            raise SyncError(
                f"{self.shop} has never been synced: run `tierline sync --shop {self.shop}` first"
            )
        await self._remember_details(shop_id)
        report = SyncReport(self.shop, "reconcile")
        started_at = self._now()
        state: dict[str, Any] = {"mode": "reconcile", "startedAt": _iso(started_at), "counts": {}}
        search = backfill.updated_since_filter(status.last_synced_at)
        self._message(f"reconciling {self.shop}: records with {search}")
        for phase in PHASES:
            client = await self.access.client()
            pending: list[dict[str, Any]] = []
            done = 0
            async for node in client.paginate(PAGE_QUERIES[phase], {"query": search}, (phase,)):
                if phase == "orders":
                    node = await self._complete_line_items(client, node)
                pending.append(node)
                if len(pending) >= self._batch_size:
                    done += len(pending)
                    state["counts"][phase] = done
                    await self._commit(shop_id, pending, report, state)
                    pending = []
                    self._progress(phase, done, 0)
            if pending:
                done += len(pending)
                state["counts"][phase] = done
                await self._commit(shop_id, pending, report, state)
            self._progress(phase, done, 0)
            self._message(f"{phase}: {done} updated since {_iso(status.last_synced_at)}")
        report.totals = {phase: int(state["counts"].get(phase) or 0) for phase in PHASES}
        await self._finish(shop_id, started_at, report)
        return report

    # --- bulk operations ------------------------------------------------------------------------

    async def _bulk_result(self, shop_id: int, phase: str, state: dict[str, Any]) -> BulkResult | None:
        """The phase's records from a completed bulk operation: the recorded one, one a crashed
        run had started, or a new one. None when the phase is to be read page by page instead
        (its bulk operations keep timing out)."""
        if state.get("paged"):
            return None
        attempts = 0
        while True:
            result: BulkOperationResult | None = None
            operation_id = state.get("bulkOperationId")
            if isinstance(operation_id, str):
                result = await self._wait(operation_id)
                if result is None:
                    self._message(f"{phase}: Shopify no longer knows bulk operation {operation_id}")
            if result is None:
                operation_id = await self._start(shop_id, phase, state)
                result = await self._wait(operation_id)
                if result is None:
                    raise SyncError(f"Shopify does not know the bulk operation {operation_id} it started")
            if result.status == "COMPLETED":
                break
            attempts += 1
            timeouts = int(state.get("timeouts") or 0) + (result.error_code == "TIMEOUT")
            state.update(bulkOperationId=None, url=None, applied=0, timeouts=timeouts)
            state.setdefault("counts", {})[phase] = 0
            await self._save(shop_id, state)
            described = (
                f"the {phase} bulk operation ended {result.status} ({result.error_code or 'no error code'})"
            )
            if result.partial_data_url:
                described += "; its partial results are incomplete and not used"
            if result.error_code == "ACCESS_DENIED":
                raise AccessDeniedError(
                    f"{described}: Shopify denied access to {phase}. The app's grant lacks a scope "
                    f"it needs ({self._settings.scopes}); the merchant must approve them"
                )
            if timeouts >= TIMEOUTS_BEFORE_PAGES:
                state.update(paged=True, cursor=None)
                await self._save(shop_id, state)
                self._message(f"{described}; reading {phase} page by page instead")
                return None
            if attempts >= MAX_BULK_ATTEMPTS:
                raise SyncError(f"{described}; run the command again to start a new one")
            self._message(f"{described}; starting a new one")
        spool = BulkResult()
        if result.url is None:  # completed without any object
            return spool
        state["url"] = result.url
        await self._save(shop_id, state)
        self._message(f"{phase}: downloading {result.object_count} objects")
        try:
            async for line in download_jsonl(self._http, result.url):
                spool.add(line)
            spool.finish()
        except BaseException:
            spool.close()
            raise
        return spool

    async def _start(self, shop_id: int, phase: str, state: dict[str, Any]) -> str:
        """A bulk operation for ``phase``: one this backfill already started (a crash can come
        between Shopify starting it and its id being stored) or a new one. Its id is stored."""
        client = await self.access.client()
        query = BULK_QUERIES[phase]
        operation_id = await self._started_before(client, query, state)
        if operation_id is None:
            try:
                operation_id = await client.run_bulk_query(query)
            except UserErrorsError as exc:
                codes = {str(error.get("code")) for error in exc.user_errors}
                if not codes & BUSY_CODES:
                    raise
                operation_id = await self._started_before(client, query, state)
                if operation_id is None:
                    raise SyncError(
                        f"another bulk query is running on {self.shop} ({exc}); trying again later"
                    ) from exc
            self._message(f"{phase}: bulk operation {operation_id} started")
        else:
            self._message(f"{phase}: bulk operation {operation_id} picked up again")
        state.update(bulkOperationId=operation_id, url=None, applied=0)
        state.setdefault("counts", {})[phase] = 0
        await self._save(shop_id, state)
        return operation_id

    async def _started_before(self, client: AdminClient, query: str, state: dict[str, Any]) -> str | None:
        """The newest bulk operation of this backfill's query, created since it began, that will
        still give a result."""
        since = _parse_iso(state.get("startedAt"))
        for operation in await client.bulk_queries():
            created = _parse_iso(operation.created_at) if operation.created_at else None
            if (
                operation.id is not None
                and operation.status in LIVE_BULK_STATUSES
                and _same_query(operation.query, query)
                and (since is None or created is None or created >= since)
            ):
                return operation.id
        return None

    async def _wait(self, operation_id: str) -> BulkOperationResult | None:
        """Poll until the operation ends, with a client whose token stays valid meanwhile.
        None when Shopify does not know the operation."""
        waited_total = 0.0
        while True:
            waited = 0.0

            async def counting_sleep(seconds: float) -> None:
                nonlocal waited
                waited += seconds
                await self._sleep(seconds)

            client = await self.access.client(sleep=counting_sleep)  # refreshes the token if due
            remaining = self._bulk_timeout - waited_total
            budget = self.access.seconds_until_refresh()
            chunk = remaining if budget is None else min(remaining, max(budget, self._poll_interval))
            try:
                return await client.poll_bulk_operation(
                    operation_id, interval=self._poll_interval, timeout=chunk
                )
            except UnknownBulkOperationError:
                return None
            except BulkOperationError:
                waited_total += waited
                # A timeout of this chunk only: poll on with a refreshed token, up to bulk_timeout.
                if waited < chunk or waited_total >= self._bulk_timeout:
                    with contextlib.suppress(ShopifyError):
                        await client.cancel_bulk_operation(operation_id)
                    raise

    # --- applying -------------------------------------------------------------------------------

    async def _apply_phase(
        self,
        shop_id: int,
        phase: str,
        state: dict[str, Any],
        result: BulkResult,
        report: SyncReport,
    ) -> None:
        applied = min(int(state.get("applied") or 0), len(result))
        total = len(result)
        if applied:
            report.resumed_after += applied
            self._message(f"{phase}: skipping {applied} of {total} records applied before")
        self._progress(phase, applied, total)
        while applied < total:
            chunk = result.records(applied, applied + self._batch_size)
            async with _write_scope(self._sessionmaker, self._gate) as session:
                await self._ensure_installed(session, shop_id)
                await self._apply_records(
                    session, shop_id, chunk, report, await get_shop_settings(session, shop_id)
                )
                applied += len(chunk)
                state["applied"] = applied
                state.setdefault("counts", {})[phase] = applied
                await sync_state.save(session, shop_id, state)
            self._progress(phase, applied, total)
        self._message(f"{phase}: {total} records applied")

    async def _page_phase(self, shop_id: int, phase: str, state: dict[str, Any], report: SyncReport) -> None:
        """The whole connection page by page (when bulk operations keep timing out); the cursor
        of the next page commits with each page's records, so a rerun continues there."""
        cursor = state.get("cursor")
        applied = int(state.get("applied") or 0)
        if applied:
            report.resumed_after += applied
        while True:
            client = await self.access.client()
            variables = {"after": cursor if isinstance(cursor, str) else None, "query": None}
            nodes, following = await client.page(PAGE_QUERIES[phase], variables, (phase,))
            if phase == "orders":
                nodes = [await self._complete_line_items(client, node) for node in nodes]
            async with _write_scope(self._sessionmaker, self._gate) as session:
                await self._ensure_installed(session, shop_id)
                await self._apply_records(
                    session, shop_id, nodes, report, await get_shop_settings(session, shop_id)
                )
                applied += len(nodes)
                state.update(applied=applied, cursor=following)
                state.setdefault("counts", {})[phase] = applied
                await sync_state.save(session, shop_id, state)
            self._progress(phase, applied, 0)
            if following is None:
                break
            cursor = following
        self._message(f"{phase}: {applied} records applied page by page")

    async def _commit(
        self,
        shop_id: int,
        records: Sequence[Mapping[str, Any]],
        report: SyncReport,
        state: dict[str, Any] | None = None,
    ) -> None:
        async with _write_scope(self._sessionmaker, self._gate) as session:
            await self._ensure_installed(session, shop_id)
            await self._apply_records(
                session, shop_id, records, report, await get_shop_settings(session, shop_id)
            )
            if state is not None:
                await sync_state.save(session, shop_id, state)

    async def _apply_records(
        self,
        session: AsyncSession,
        shop_id: int,
        records: Sequence[Mapping[str, Any]],
        report: SyncReport,
        settings: ShopSettings,
    ) -> None:
        for obj in records:
            try:
                snap = backfill.snapshot(obj)
            except backfill.MappingError as exc:
                snap = None
                logger.warning("sync.record_skipped", extra={"shop": self.shop, "error": str(exc)[:200]})
            if snap is None:
                report.skipped += 1
            elif isinstance(snap, CustomerSnapshot):
                await upsert_customer(session, shop_id, snap)
                report.customers += 1
            else:
                await apply_order(session, shop_id, snap, settings)
                report.orders += 1

    async def _complete_line_items(self, client: AdminClient, node: dict[str, Any]) -> dict[str, Any]:
        """An order node with every line item, paging through ``lineItems`` when it has more."""
        connection = node.get("lineItems")
        page_info = connection.get("pageInfo") if isinstance(connection, Mapping) else None
        if not isinstance(page_info, Mapping) or not page_info.get("hasNextPage"):
            return node
        more = [
            line
            async for line in client.paginate(
                backfill.ORDER_LINES_PAGE_QUERY,
                {"id": node.get("id"), "after": page_info.get("endCursor")},
                ("order", "lineItems"),
            )
        ]
        return backfill.merge_line_items(node, more)

    # --- bookkeeping ----------------------------------------------------------------------------

    async def _status(self, shop_id: int) -> sync_state.SyncStatus:
        async with session_scope(self._sessionmaker) as session:
            status = await sync_state.get(session, shop_id)
        if status is None or status.uninstalled:
            raise NotInstalledError(f"{self.shop} is not installed")
        return status

    async def _ensure_installed(self, session: AsyncSession, shop_id: int) -> None:
        status = await sync_state.get(session, shop_id)
        if status is None or status.uninstalled:
            raise NotInstalledError(f"{self.shop} was uninstalled while syncing; nothing more is applied")

    async def _remember_details(self, shop_id: int) -> None:
        """The shop's currency and time zone, for the merchant pages (not fatal if refused)."""
        client = await self.access.client()
        try:
            details = await client.shop_details()
        except ShopifyError as exc:
            self._message(f"could not read {self.shop}'s currency and time zone ({exc}); continuing")
            return
        async with _write_scope(self._sessionmaker, self._gate) as session:
            await shops.set_details(
                session, shop_id, currency=details.currency, iana_timezone=details.iana_timezone
            )

    async def _save(self, shop_id: int, state: dict[str, Any]) -> None:
        async with _write_scope(self._sessionmaker, self._gate) as session:
            await sync_state.save(session, shop_id, state)

    async def _finish(self, shop_id: int, started_at: datetime, report: SyncReport) -> None:
        async with _write_scope(self._sessionmaker, self._gate) as session:
            await sync_state.finish(session, shop_id, synced_at=started_at, summary=report.summary())
            if report.mode == "bulk":
                # Write-back of every existing customer after a backfill (docs/shopify-app.md); those whose
                # figures the backfill's batches already queued are left as they are.
                await writeback.queue_shop(session, shop_id)
        report.synced_at = started_at


async def sync_shop(
    sessionmaker: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    settings: Settings,
    shop: str,
    *,
    reconcile: bool = False,
    **options: Any,
) -> SyncReport:
    """Backfill (default) or reconcile one shop; see :class:`ShopSync` for the options."""
    run = ShopSync(sessionmaker, http, settings, shop, **options)
    return await (run.reconcile() if reconcile else run.backfill())
