"""The ``tierline`` command."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import typer
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import MissingSecretsError, Settings
from service.log import configure_logging
from shopify_client import is_valid_shop_domain

logger = logging.getLogger("tierline")

#: Plain help (no boxes, no ``<bool>`` type labels) and plain tracebacks (never local variables,
#: which could hold secrets) for the errors no command expects.
TYPER_OPTIONS: dict[str, Any] = {
    "no_args_is_help": True,
    "add_completion": False,
    "rich_markup_mode": None,
    "pretty_exceptions_enable": False,
}

app = typer.Typer(
    name="tierline",
    help="Customer value for Shopify merchants: webhook intake, LTV, tiers and COD RTO counts.",
    **TYPER_OPTIONS,
)
api_key_app = typer.Typer(help="Manage per-shop API keys.", **TYPER_OPTIONS)
app.add_typer(api_key_app, name="api-key")


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"tierline: {message}", err=True)
    return typer.Exit(code)


def load_settings(*, secrets_required: bool = False) -> Settings:
    """Settings from the environment. With ``secrets_required`` and TIERLINE_ENV=production,
    a missing or placeholder secret stops the command, naming each variable."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{e['loc'][0] if e['loc'] else 'settings'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise fail(f"invalid settings: {problems}") from exc
    configure_logging(production=settings.is_production, fmt=settings.log_format)
    if secrets_required or not settings.is_production:
        try:
            settings = settings.with_dev_fallbacks()
        except MissingSecretsError as exc:
            refused = "; ".join(f"{name} {reason}" for name, reason in exc.problems)
            raise fail(f"production refuses to start: {refused}") from exc
    return settings


def describe_database(url: str) -> str:
    """The database URL without its password, for startup messages."""
    return make_url(url).render_as_string(hide_password=True)


def _reason(exc: BaseException) -> str:
    """The first line of a database error's cause, without SQLAlchemy's decoration."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()
    return text[0][:300] if text else type(cause).__name__


async def database_problem(engine: AsyncEngine, settings: Settings) -> tuple[str | None, bool]:
    """(message, reachable): what stops a command from using this database, or (None, True)."""
    from service.migrate import schema_state

    database = describe_database(settings.database_url)
    try:
        state = await schema_state(engine)
    except (OperationalError, DBAPIError, OSError) as exc:
        return f"cannot reach the database {database}: {_reason(exc)}", False
    note = state.note(database)
    if note:
        logger.warning("database.newer_schema", extra={"database": database, "revision": state.current})
        typer.echo(f"tierline: {note}", err=True)
    return state.problem(database), True


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on a reachable database migrated to this code's revision; else one line and exit 1."""
    from service.db import make_engine

    engine = make_engine(settings)
    try:
        problem, _ = await database_problem(engine, settings)
        if problem:
            raise fail(problem, code=1)
        yield engine
    finally:
        await engine.dispose()


#: Allocations between two young-generation collections (CPython's default: 700).
GC_YOUNG_THRESHOLD = 7000


def tune_gc() -> None:
    """Once the code is loaded: what start-up built moves out of the collector's sight for good
    (``gc.freeze``), and the young generation is collected every 7,000 allocations instead of 700
    (``service/__init__.py`` sets it for start-up already).

    An enrich request of 250 orders allocates several thousand objects and set off about eight
    collections; 10 times fewer cut 0.2 ms (6 %) of its time, and the worker's too
    (docs/benchmarks.md). Memory is unchanged: request objects are freed by reference counting,
    the collector only finds cycles.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def check_database(settings: Settings) -> None:
    """For the long-running commands: refuse a database that is not migrated. One that cannot be
    reached yet is only a warning (it may be starting too); ``/ready`` reports it meanwhile."""
    from service.db import make_engine

    async def _check() -> None:
        engine = make_engine(settings)
        try:
            await check_engine(engine, settings)
        finally:
            await engine.dispose()

    asyncio.run(_check())


async def check_engine(engine: AsyncEngine, settings: Settings) -> None:
    """:func:`check_database` on an engine the command goes on to use."""
    problem, reachable = await database_problem(engine, settings)
    if problem and reachable:
        raise fail(problem, code=1)
    if problem:
        logger.warning("database.unreachable", extra={"database": describe_database(settings.database_url)})
        typer.echo(f"tierline: {problem}; starting anyway, /ready says when it answers", err=True)


def listen_socket(host: str, port: int) -> socket.socket:
    """Bind the server's socket before announcing it, so a busy port is refused in one line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise fail(f"cannot listen on {host!r}: {exc.strerror or 'unknown host'}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise fail(
                f"port {port} on {host} is already in use (another tierline serve?): stop that "
                "process, or choose another port with --port or PORT",
                code=1,
            ) from exc
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", code=1) from exc
    sock.set_inheritable(True)
    return sock


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(metavar="HOST", help="Interface to bind (default HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(metavar="PORT", min=1, max=65535, help="Port (default PORT or 8000).")
    ] = None,
) -> None:
    """Serve the webhook endpoint and the read API (and the worker, with TIERLINE_WORKER=inline)."""
    import uvicorn

    from service.app import create_app
    from service.server import run_processes, server_config

    settings = load_settings(secrets_required=True)
    host = host or settings.host
    port = settings.port if port is None else port
    check_database(settings)
    sock = listen_socket(host, port)
    database = describe_database(settings.database_url)
    if settings.is_production:
        logger.info(
            "serve.listening",
            extra={
                "host": host,
                "port": port,
                "database": database,
                "worker": settings.worker,
                "env": settings.env,
                "processes": settings.web_processes,
            },
        )
    else:
        typer.echo(
            f"tierline listening on http://{host}:{port}  database: {database}  worker: {settings.worker}"
            f"  env: {settings.env}"
            + (f"  processes: {settings.web_processes}" if settings.web_processes > 1 else ""),
            err=True,
        )

    def serve_one() -> None:
        config = server_config(create_app(settings), settings, host=host, port=port)
        tune_gc()
        uvicorn.Server(config).run(sockets=[sock])

    if settings.web_processes > 1:
        # Several processes accept on the one socket (PostgreSQL only: Settings refuses SQLite).
        sys.exit(run_processes(serve_one, settings.web_processes))
    serve_one()


@app.command()
def worker(
    drain: Annotated[bool, typer.Option(help="Apply what is due, then exit.")] = False,
) -> None:
    """Run the inbox worker on its own (several may run against one PostgreSQL)."""
    settings = load_settings(secrets_required=True)
    sys.exit(asyncio.run(_worker(settings, drain=drain)))


async def _worker(settings: Settings, *, drain: bool) -> int:
    from service.db import make_engine, make_sessionmaker
    from service.http import http_client
    from service.jobs import JobRunner
    from service.metrics import record_settled
    from service.writeback import WriteBackSender
    from webhooks.handlers import build_router
    from webhooks.worker import InboxWorker

    tune_gc()
    # One engine (one pool, one event loop) checks the database and then does the work.
    engine = make_engine(settings)
    try:
        await check_engine(engine, settings)
        typer.echo(f"tierline worker  database: {describe_database(settings.database_url)}", err=True)
        sessionmaker = make_sessionmaker(engine)
        inbox_worker = InboxWorker(sessionmaker, build_router(), settings, on_settled=record_settled)
        async with http_client(httpx.Timeout(60.0, connect=10.0)) as http:
            job_runner = JobRunner(sessionmaker, http, settings)
            sender = WriteBackSender(sessionmaker, http, settings)
            if drain:
                count = await inbox_worker.drain()
                outcomes = await job_runner.drain()
                written = await sender.drain()
                typer.echo(
                    f"applied {count} deliveries, ran {len(outcomes)} sync jobs, "
                    f"wrote back {written.sent} resources",
                    err=True,
                )
                return 0

            def stop() -> None:
                inbox_worker.stop()
                job_runner.stop()
                sender.stop()

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop)
            await asyncio.gather(inbox_worker.run(), job_runner.run(), sender.run())
            return 0
    finally:
        await engine.dispose()


@app.command()
def migrate() -> None:
    """Upgrade the database schema to the latest revision."""
    from service.migrate import head_revision, upgrade

    settings = load_settings(secrets_required=True)
    typer.echo(f"migrating {describe_database(settings.database_url)} ...", err=True)
    revision = asyncio.run(upgrade(settings))
    if revision != head_revision():
        typer.echo(f"database at revision {revision}, newer than this release: nothing to do", err=True)
        return
    typer.echo(f"database at revision {revision}", err=True)


@app.command()
def simulate(
    url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Base URL of a running tierline server (default: http://HOST:PORT from the settings).",
        ),
    ] = None,
    shop: Annotated[
        str | None, typer.Option(metavar="DOMAIN", help="Shop domain to send as (default TIERLINE_DEV_SHOP).")
    ] = None,
    customers: Annotated[int, typer.Option(metavar="N", min=1, help="Customers to create.")] = 50,
    orders: Annotated[int, typer.Option(metavar="N", min=0, help="Distinct orders to place.")] = 200,
    seed: Annotated[int, typer.Option(metavar="S", help="Same seed, same deliveries (ids and bodies).")] = 1,
    concurrency: Annotated[
        int, typer.Option(metavar="C", min=1, max=256, help="Deliveries in flight at once.")
    ] = 8,
) -> None:
    """Send realistic signed webhooks to a running server: a demo and a load generator.

    Six months of a shop's history up to today: customers, orders (~40% COD), payments, edits, deletes.

    Duplicates and out-of-order arrivals as Shopify sends them, signed with SHOPIFY_API_SECRET.

    Exits non-zero when the server is unreachable or any delivery does not end in 200.
    """
    settings = load_settings()
    shop = (shop or settings.dev_shop).strip()
    if not is_valid_shop_domain(shop):
        raise fail(f"not a shop domain: {shop!r} (expected name.myshopify.com)")
    if not settings.shopify_api_secret:
        raise fail("SHOPIFY_API_SECRET is not set: the server would refuse every signature")
    asyncio.run(
        _simulate(
            settings,
            url=url or settings.local_url,
            shop=shop.lower(),
            customers=customers,
            orders=orders,
            seed=seed,
            concurrency=concurrency,
        )
    )


def no_server(base: str) -> str:
    return (
        f"no tierline server answers at {base}; start one with `make run`, or name yours with "
        "PORT (in the environment or .env) or --url"
    )


async def _simulate(
    settings: Settings,
    *,
    url: str,
    shop: str,
    customers: int,
    orders: int,
    seed: int,
    concurrency: int,
    transport: httpx.AsyncBaseTransport | None = None,
) -> None:
    from service.simulate import DEFAULT_DAYS, WEBHOOK_PATH, generate_traffic, send_traffic

    base = url.rstrip("/")
    # The history ends at today's midnight (UTC): reruns on the same day send identical bodies.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    deliveries = generate_traffic(
        shop=shop, customers=customers, orders=orders, seed=seed, start=today - timedelta(days=DEFAULT_DAYS)
    )
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0), limits=limits, transport=transport) as http:
        try:
            await http.get(f"{base}/health", timeout=5.0)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise fail(f"not an http(s) URL: {url!r}") from exc
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise fail(no_server(base), code=1) from exc
        except httpx.TransportError as exc:
            raise fail(
                f"the server at {base} did not answer GET /health ({type(exc).__name__})", code=1
            ) from exc
        typer.echo(
            f"sending {len(deliveries)} deliveries ({customers} customers, {orders} orders, seed {seed}) "
            f"as {shop} to {base}{WEBHOOK_PATH}",
            err=True,
        )
        with typer.progressbar(length=len(deliveries), label="simulate", file=sys.stderr) as bar:
            report = await send_traffic(
                deliveries,
                url=base,
                secret=settings.shopify_api_secret,
                shop=shop,
                concurrency=concurrency,
                http=http,
                progress=lambda _done, _total: bar.update(1),
            )
    statuses = ", ".join(f"{code}: {count}" for code, count in report.status_counts.items()) or "none"
    typer.echo(
        f"sent {report.sent}  accepted {report.accepted}  duplicates {report.duplicates}  "
        f"errors {report.errors}  retries {report.retries}\n"
        f"HTTP status {statuses}\n"
        f"{report.elapsed_seconds:.2f} s, {report.rate:.1f} deliveries/s, "
        f"latency p50 {report.p50_ms:.1f} ms, p99 {report.p99_ms:.1f} ms"
    )
    if report.sent and report.errors == report.sent and set(report.error_kinds) <= {"ConnectError"}:
        raise fail(no_server(base), code=1)
    if not report.ok:
        problems = [f"HTTP {code}: {count}" for code, count in report.status_counts.items() if code != 200]
        problems += [f"{kind}: {count}" for kind, count in report.error_kinds.items()]
        raise fail(
            f"{report.failed} of {report.sent} deliveries did not end in 200 ({', '.join(problems)})", code=1
        )


@app.command()
def replay(
    status: Annotated[
        str | None, typer.Option(metavar="STATUS", help="failed|dead|ignored (default: failed and dead).")
    ] = None,
    topic: Annotated[str | None, typer.Option(metavar="TOPIC", help="Only this topic.")] = None,
    shop: Annotated[str | None, typer.Option(metavar="DOMAIN", help="Only this shop domain.")] = None,
    id: Annotated[int | None, typer.Option("--id", metavar="ID", help="Only this delivery id.")] = None,
) -> None:
    """Put failed, dead or ignored deliveries back in the queue."""
    if status is not None and status not in ("failed", "dead", "ignored"):
        raise fail("--status must be failed, dead or ignored")
    if shop is not None and not is_valid_shop_domain(shop):
        raise fail(f"not a shop domain: {shop!r}")
    settings = load_settings()
    count = asyncio.run(_replay(settings, status=status, topic=topic, shop=shop, delivery_id=id))
    typer.echo(f"replayed {count} deliveries")


async def _replay(
    settings: Settings, *, status: str | None, topic: str | None, shop: str | None, delivery_id: int | None
) -> int:
    from service.db import make_sessionmaker, session_scope
    from service.domain import inbox
    from service.domain.shops import find_shop_id

    async with open_database(settings) as engine, session_scope(make_sessionmaker(engine)) as session:
        shop_id = None
        if shop is not None:
            shop_id = await find_shop_id(session, shop.lower())
            if shop_id is None:
                return 0
        return await inbox.replay(
            session, shop_id=shop_id, status=status, topic=topic, delivery_id=delivery_id
        )


async def _shop_ids(session: Any, shop: str | None) -> list[tuple[int, str]]:
    from service.domain.shops import all_shops, find_shop_id

    if shop is None:
        return await all_shops(session)
    shop_id = await find_shop_id(session, shop.lower())
    if shop_id is None:
        raise fail(f"no shop {shop!r} in this database")
    return [(shop_id, shop.lower())]


@app.command("recalc-tiers")
def recalc_tiers(
    shop: Annotated[
        str | None, typer.Option(metavar="DOMAIN", help="Only this shop domain (default: every shop).")
    ] = None,
) -> None:
    """Set every customer's tier of record to the live tier (history reason: batch)."""
    if shop is not None and not is_valid_shop_domain(shop):
        raise fail(f"not a shop domain: {shop!r}")
    settings = load_settings()
    asyncio.run(_recalc_tiers(settings, shop))


async def _recalc_tiers(settings: Settings, shop: str | None) -> None:
    from service.db import make_sessionmaker, session_scope
    from service.domain.rederive import recalculate_tiers

    async with open_database(settings) as engine:
        async with session_scope(make_sessionmaker(engine)) as session:
            targets = await _shop_ids(session, shop)
        for shop_id, domain in targets:
            async with session_scope(make_sessionmaker(engine)) as session:
                progress = Progress(f"{domain}: tiers")
                result = await recalculate_tiers(session, shop_id, progress=progress.update)
                progress.done()
            typer.echo(f"{domain}: {result.total} customers, {result.updated} tiers of record changed")


@app.command()
def check(
    shop: Annotated[
        str | None, typer.Option(metavar="DOMAIN", help="Only this shop domain (default: every shop).")
    ] = None,
) -> None:
    """Recompute every customer's figures from orders; report any difference from what is served."""
    if shop is not None and not is_valid_shop_domain(shop):
        raise fail(f"not a shop domain: {shop!r}")
    settings = load_settings()
    differences = asyncio.run(_check(settings, shop))
    if differences:
        raise typer.Exit(1)


async def _check(settings: Settings, shop: str | None) -> int:
    from service.db import make_sessionmaker, session_scope
    from service.domain import stats
    from service.domain.settings import get_shop_settings

    found = 0
    async with open_database(settings) as engine, session_scope(make_sessionmaker(engine)) as session:
        targets = await _shop_ids(session, shop)
        for shop_id, domain in targets:
            shop_settings = await get_shop_settings(session, shop_id)
            progress = Progress(f"{domain}: checking customers")
            differences = await stats.check(session, shop_id, shop_settings, progress=progress.count)
            progress.done()
            for diff in differences:
                typer.echo(
                    f"{domain} customer {diff.customer_id}: {diff.field} served {diff.stored}, "
                    f"recomputed {diff.recomputed}"
                )
            found += len(differences)
            typer.echo(f"{domain}: {len(differences)} differences")
    return found


class Progress:
    """A one-line progress display on stderr for long commands."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._last = 0.0

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.2:
            return
        self._last = now
        shown = f"{done}/{total}" if total else str(done)
        typer.echo(f"\r{self.label}: {shown}", err=True, nl=False)

    def count(self, done: int) -> None:
        self.update(done, 0)

    def done(self) -> None:
        if self._last:
            typer.echo("", err=True)


@api_key_app.command("create")
def api_key_create(
    shop: Annotated[str, typer.Option(metavar="DOMAIN", help="The shop's myshopify.com domain.")],
) -> None:
    """Create an API key for a shop; the key is printed once, on the last line."""
    if not is_valid_shop_domain(shop):
        raise fail(f"not a shop domain: {shop!r} (expected name.myshopify.com)")
    settings = load_settings()
    key = asyncio.run(_api_key_create(settings, shop.lower()))
    typer.echo(f"API key for {shop.lower()} (store it now; it is not shown again):", err=True)
    typer.echo(key)


async def _api_key_create(settings: Settings, shop: str) -> str:
    from service.db import make_sessionmaker, session_scope
    from service.domain.api_keys import create_api_key

    async with open_database(settings) as engine, session_scope(make_sessionmaker(engine)) as session:
        return await create_api_key(session, shop)


def _when(moment: datetime | None, missing: str) -> str:
    return missing if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


@api_key_app.command("list")
def api_key_list(
    shop: Annotated[
        str | None,
        typer.Option(metavar="DOMAIN", help="Only this shop's keys (default: every shop's)."),
    ] = None,
) -> None:
    """List API keys: id, shop, prefix, created, last used, revoked. Never the key itself."""
    if shop is not None and not is_valid_shop_domain(shop):
        raise fail(f"not a shop domain: {shop!r} (expected name.myshopify.com)")
    settings = load_settings()
    keys = asyncio.run(_api_key_list(settings, shop.lower() if shop else None))
    if not keys:
        typer.echo(f"no API keys{f' for {shop.lower()}' if shop else ''}", err=True)
        return
    rows = [("id", "shop", "prefix", "created", "last used", "revoked")]
    rows += [
        (
            str(key.id),
            key.shop,
            f"{key.prefix}…",
            _when(key.created_at, "-"),
            _when(key.last_used_at, "never"),
            _when(key.revoked_at, "-"),
        )
        for key in keys
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


async def _api_key_list(settings: Settings, shop: str | None) -> list[Any]:
    from service.db import make_sessionmaker, session_scope
    from service.domain.api_keys import list_api_keys

    async with (
        open_database(settings) as engine,
        session_scope(make_sessionmaker(engine), readonly=True) as session,
    ):
        return await list_api_keys(session, shop)


@api_key_app.command("revoke")
def api_key_revoke(
    key_id: Annotated[int, typer.Argument(metavar="ID", min=1, help="The key's id (from `api-key list`).")],
) -> None:
    """Revoke an API key: every request with it is refused (401) from now on."""
    settings = load_settings()
    key, changed = asyncio.run(_api_key_revoke(settings, key_id))
    if key is None:
        raise fail(f"no API key with id {key_id} (see `tierline api-key list`)", code=1)
    if changed:
        typer.echo(f"revoked API key {key.id} ({key.prefix}…) of {key.shop}")
    else:
        revoked = _when(key.revoked_at, "")
        typer.echo(f"API key {key.id} ({key.prefix}…) of {key.shop} was already revoked {revoked}")


async def _api_key_revoke(settings: Settings, key_id: int) -> tuple[Any, bool]:
    from service.db import make_sessionmaker, session_scope
    from service.domain.api_keys import revoke_api_key

    async with open_database(settings) as engine, session_scope(make_sessionmaker(engine)) as session:
        return await revoke_api_key(session, key_id)


@app.command()
def sync(
    shop: Annotated[str, typer.Option(metavar="DOMAIN", help="The shop's myshopify.com domain (installed).")],
    reconcile: Annotated[
        bool, typer.Option(help="Only what changed since the last sync (updated_at:>), page by page.")
    ] = False,
    batch_size: Annotated[
        int,
        typer.Option(metavar="N", min=1, max=5000, help="Records per transaction (SQLite uses at most 100)."),
    ] = 500,
) -> None:
    """Backfill a shop's customers and orders from the Admin API (bulk operations), resumably.

    An interrupted run continues where it stopped when run again. With --reconcile, fetch only the
    customers and orders updated since the last completed sync (deliveries Shopify never sent).
    Progress goes to stderr; the summary to stdout.
    """
    if not is_valid_shop_domain(shop):
        raise fail(f"not a shop domain: {shop!r} (expected name.myshopify.com)")
    settings = load_settings(secrets_required=True)
    report = asyncio.run(_sync(settings, shop.lower(), reconcile=reconcile, batch_size=batch_size))
    typer.echo(
        f"{report.shop}: {report.mode} sync applied {report.customers} customers and {report.orders} orders"
        + (f" ({report.skipped} records skipped)" if report.skipped else "")
        + (f", after {report.resumed_after} applied by an earlier run" if report.resumed_after else "")
    )


async def _sync(
    settings: Settings,
    shop: str,
    *,
    reconcile: bool,
    batch_size: int = 500,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Any:
    """Run the shop's sync job here, in the foreground: the same durable job a worker runs, so a
    worker and an operator never sync one shop at once (the job is leased to this command)."""
    from service.db import make_sessionmaker, session_scope
    from service.domain import jobs
    from service.jobs import JobRunner
    from service.sync import ShopAccess, SyncError

    bars: dict[str, Progress] = {}

    def progress(phase: str, done: int, total: int) -> None:
        bars.setdefault(phase, Progress(f"{shop}: {phase}")).update(done, total)

    def message(text: str) -> None:
        for bar in bars.values():
            bar.done()
        bars.clear()
        typer.echo(text, err=True)

    kind = jobs.RECONCILE if reconcile else jobs.BACKFILL
    try:
        async with (
            open_database(settings) as engine,
            httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0), transport=transport) as http,
        ):
            sessionmaker = make_sessionmaker(engine)
            runner = JobRunner(sessionmaker, http, settings, owner=f"tierline-sync:{os.getpid()}")
            shop_id = await ShopAccess(sessionmaker, http, settings, shop).open()  # not installed: says so
            async with session_scope(sessionmaker) as session:
                job, blocking = await jobs.take_over(
                    session,
                    shop_id,
                    kind,
                    runner.owner,
                    lease_seconds=settings.job_lease_seconds,
                    trigger="operator",
                )
            if job is None:
                what = f"a {blocking.kind} ({blocking.state})" if blocking is not None else "another sync"
                raise fail(
                    f"{what} of {shop} is being run by a worker; it continues on its own "
                    "(progress: GET /api/shop). Try again when it has finished",
                    code=1,
                )
            outcome = await runner.run_job(
                job, progress=progress, message=message, batch_size=batch_size, exact=True
            )
    except SyncError as exc:
        raise fail(str(exc), code=1) from exc
    finally:
        for bar in bars.values():
            bar.done()
    if outcome.state != "done" or outcome.report is None:
        retry = (
            " (a worker tries again later; run the command again to resume now)"
            if outcome.state == "retry"
            else ""
        )
        raise fail(f"{outcome.error or outcome.state}{retry}", code=1)
    return outcome.report


write_back_app = typer.Typer(
    help="Write-back to Shopify: status and replay of failed writes.", no_args_is_help=True
)
app.add_typer(write_back_app, name="write-back")


@write_back_app.command("replay")
def write_back_replay(
    shop: Annotated[str | None, typer.Option(metavar="DOMAIN", help="Only this shop domain.")] = None,
    id: Annotated[int | None, typer.Option("--id", metavar="ID", help="Only this write-back id.")] = None,
) -> None:
    """Put failed write-backs back in the queue (the worker sends them again)."""
    if shop is not None and not is_valid_shop_domain(shop):
        raise fail(f"not a shop domain: {shop!r}")
    settings = load_settings()
    count = asyncio.run(_write_back_replay(settings, shop=shop, row_id=id))
    typer.echo(f"replayed {count} write-backs")


async def _write_back_replay(settings: Settings, *, shop: str | None, row_id: int | None) -> int:
    from service.db import make_sessionmaker, session_scope
    from service.domain import writeback
    from service.domain.shops import find_shop_id

    async with open_database(settings) as engine, session_scope(make_sessionmaker(engine)) as session:
        shop_id = None
        if shop is not None:
            shop_id = await find_shop_id(session, shop.lower())
            if shop_id is None:
                return 0
        return await writeback.replay(session, shop_id=shop_id, row_id=row_id)


@write_back_app.command("status")
def write_back_status(
    shop: Annotated[str, typer.Option(metavar="DOMAIN", help="The shop's myshopify.com domain.")],
) -> None:
    """Pending and failed write-backs of a shop, and when tierline last wrote to it."""
    if not is_valid_shop_domain(shop):
        raise fail(f"not a shop domain: {shop!r}")
    settings = load_settings()
    lines = asyncio.run(_write_back_status(settings, shop.lower()))
    for line in lines:
        typer.echo(line)


async def _write_back_status(settings: Settings, shop: str) -> list[str]:
    from service.db import make_sessionmaker, session_scope
    from service.domain import writeback
    from service.domain.shops import find_shop_id

    async with open_database(settings) as engine, session_scope(make_sessionmaker(engine)) as session:
        shop_id = await find_shop_id(session, shop)
        if shop_id is None:
            raise fail(f"no shop {shop}", code=1)
        summary = await writeback.summary(session, shop_id)
        lines = [
            f"{shop}: {summary.pending} pending, {summary.failed} failed, "
            f"last written {_when(summary.last_written_at, 'never')}"
        ]
        for row in await writeback.failed_rows(session, shop_id):
            lines.append(
                f"failed  {row.id}  {row.kind} {row.resource_id}  {row.attempts} attempts  {row.last_error}"
            )
        return lines


webhooks_app = typer.Typer(help="Shop-specific webhook subscriptions (custom apps).", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("register")
def webhooks_register(
    shop: Annotated[str, typer.Option(metavar="DOMAIN", help="The shop's myshopify.com domain (installed).")],
    url: Annotated[
        str | None,
        typer.Option(
            metavar="URL", help="HTTPS address to deliver to (default: SHOPIFY_APP_URL + /webhooks/shopify)."
        ),
    ] = None,
) -> None:
    """Subscribe one shop to every topic tierline handles, through the Admin GraphQL API.

    For custom apps, which cannot use shopify.app.toml. The privacy topics can only be declared in
    the app configuration. Safe to run again: existing subscriptions are kept.
    """
    if not is_valid_shop_domain(shop):
        raise fail(f"not a shop domain: {shop!r} (expected name.myshopify.com)")
    settings = load_settings(secrets_required=True)
    report = asyncio.run(_webhooks_register(settings, shop.lower(), url or settings.shopify_app_url))
    for topic, subscription_id in report.created.items():
        typer.echo(f"created  {topic}  {subscription_id}")
    for topic in report.existing:
        typer.echo(f"exists   {topic}")
    for topic, reason in report.refused.items():
        typer.echo(f"refused  {topic}  {reason}", err=True)
    typer.echo(
        f"{shop.lower()}: {len(report.created)} created, {len(report.existing)} already present, "
        f"{len(report.refused)} refused, delivering to {report.uri}",
        err=True,
    )
    if report.refused:
        raise typer.Exit(1)


async def _webhooks_register(
    settings: Settings, shop: str, url: str, *, transport: httpx.AsyncBaseTransport | None = None
) -> Any:
    from service.db import make_sessionmaker
    from service.subscriptions import SubscriptionError, register_webhooks
    from service.sync import SyncError
    from shopify_client import ShopifyError

    try:
        async with (
            open_database(settings) as engine,
            httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0), transport=transport) as http,
        ):
            return await register_webhooks(make_sessionmaker(engine), http, settings, shop, url)
    except (SyncError, SubscriptionError) as exc:
        raise fail(str(exc), code=1) from exc
    except ShopifyError as exc:
        raise fail(f"Shopify: {exc} ({type(exc).__name__})", code=1) from exc


def main() -> None:
    app()


if __name__ == "__main__":
    main()
