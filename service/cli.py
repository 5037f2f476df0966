"""The ``tierline`` command."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import typer
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from service.config import MissingSecretsError, Settings
from service.log import configure_logging
from shopify_client import is_valid_shop_domain

logger = logging.getLogger("tierline")

app = typer.Typer(
    name="tierline",
    help="Customer value for Shopify merchants: webhook intake, LTV, tiers and COD RTO counts.",
    no_args_is_help=True,
    add_completion=False,
)
api_key_app = typer.Typer(help="Manage per-shop API keys.", no_args_is_help=True)
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
        fields = ", ".join(str(e["loc"][0]) for e in exc.errors())
        raise fail(f"invalid settings: {fields}") from exc
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


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default PORT or 8000).")] = None,
) -> None:
    """Serve the webhook endpoint and the read API (and the worker, with TIERLINE_WORKER=inline)."""
    import uvicorn

    from service.app import create_app
    from service.server import server_config

    settings = load_settings(secrets_required=True)
    host = host or settings.host
    port = port or settings.port
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
            },
        )
    else:
        typer.echo(
            f"tierline listening on http://{host}:{port}  database: {database}  worker: {settings.worker}"
            f"  env: {settings.env}",
            err=True,
        )
    config = server_config(create_app(settings), settings, host=host, port=port)
    uvicorn.Server(config).run()


@app.command()
def worker(
    drain: Annotated[bool, typer.Option(help="Apply what is due, then exit.")] = False,
) -> None:
    """Run the inbox worker on its own (several may run against one PostgreSQL)."""
    settings = load_settings(secrets_required=True)
    typer.echo(f"tierline worker  database: {describe_database(settings.database_url)}", err=True)
    sys.exit(asyncio.run(_worker(settings, drain=drain)))


async def _worker(settings: Settings, *, drain: bool) -> int:
    from service.db import make_engine, make_sessionmaker
    from service.metrics import record_settled
    from webhooks.handlers import build_router
    from webhooks.worker import InboxWorker

    engine = make_engine(settings)
    inbox_worker = InboxWorker(make_sessionmaker(engine), build_router(), settings, on_settled=record_settled)
    try:
        if drain:
            count = await inbox_worker.drain()
            typer.echo(f"applied {count} deliveries", err=True)
            return 0
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, inbox_worker.stop)
        await inbox_worker.run()
        return 0
    finally:
        await engine.dispose()


@app.command()
def migrate() -> None:
    """Upgrade the database schema to the latest revision."""
    from service.migrate import upgrade

    settings = load_settings(secrets_required=True)
    typer.echo(f"migrating {describe_database(settings.database_url)} ...", err=True)
    revision = asyncio.run(upgrade(settings))
    typer.echo(f"database at revision {revision}", err=True)


@app.command()
def simulate(
    url: Annotated[
        str, typer.Option(help="Base URL of a running tierline server.")
    ] = "http://127.0.0.1:8000",
    shop: Annotated[
        str | None, typer.Option(help="Shop domain to send as (default TIERLINE_DEV_SHOP).")
    ] = None,
    customers: Annotated[int, typer.Option(min=1, help="Customers to create.")] = 50,
    orders: Annotated[int, typer.Option(min=0, help="Distinct orders to place.")] = 200,
    seed: Annotated[int, typer.Option(help="Same seed, same deliveries (ids and bodies).")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Deliveries in flight at once.")] = 8,
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
            url=url,
            shop=shop.lower(),
            customers=customers,
            orders=orders,
            seed=seed,
            concurrency=concurrency,
        )
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
            raise fail(f"no tierline server answers at {base}; start one with `make run`", code=1) from exc
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
        raise fail(f"no tierline server answers at {base}; start one with `make run`", code=1)
    if not report.ok:
        problems = [f"HTTP {code}: {count}" for code, count in report.status_counts.items() if code != 200]
        problems += [f"{kind}: {count}" for kind, count in report.error_kinds.items()]
        raise fail(
            f"{report.failed} of {report.sent} deliveries did not end in 200 ({', '.join(problems)})", code=1
        )


@app.command()
def replay(
    status: Annotated[
        str | None, typer.Option(help="failed|dead|ignored (default: failed and dead).")
    ] = None,
    topic: Annotated[str | None, typer.Option(help="Only this topic.")] = None,
    shop: Annotated[str | None, typer.Option(help="Only this shop domain.")] = None,
    id: Annotated[int | None, typer.Option("--id", help="Only this delivery id.")] = None,
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
    from service.db import make_engine, make_sessionmaker, session_scope
    from service.domain import inbox
    from service.domain.shops import find_shop_id

    engine = make_engine(settings)
    try:
        async with session_scope(make_sessionmaker(engine)) as session:
            shop_id = None
            if shop is not None:
                shop_id = await find_shop_id(session, shop.lower())
                if shop_id is None:
                    return 0
            return await inbox.replay(
                session, shop_id=shop_id, status=status, topic=topic, delivery_id=delivery_id
            )
    finally:
        await engine.dispose()


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
    shop: Annotated[str | None, typer.Option(help="Only this shop domain (default: every shop).")] = None,
) -> None:
    """Set every customer's tier of record to the live tier (history reason: batch)."""
    if shop is not None and not is_valid_shop_domain(shop):
        raise fail(f"not a shop domain: {shop!r}")
    settings = load_settings()
    asyncio.run(_recalc_tiers(settings, shop))


async def _recalc_tiers(settings: Settings, shop: str | None) -> None:
    from service.db import make_engine, make_sessionmaker, session_scope
    from service.domain.rederive import recalculate_tiers

    engine = make_engine(settings)
    try:
        async with session_scope(make_sessionmaker(engine)) as session:
            targets = await _shop_ids(session, shop)
        for shop_id, domain in targets:
            async with session_scope(make_sessionmaker(engine)) as session:
                progress = Progress(f"{domain}: tiers")
                result = await recalculate_tiers(session, shop_id, progress=progress.update)
                progress.done()
            typer.echo(f"{domain}: {result.total} customers, {result.updated} tiers of record changed")
    finally:
        await engine.dispose()


@app.command()
def check(
    shop: Annotated[str | None, typer.Option(help="Only this shop domain (default: every shop).")] = None,
) -> None:
    """Recompute every customer's figures from orders; report any difference from what is served."""
    if shop is not None and not is_valid_shop_domain(shop):
        raise fail(f"not a shop domain: {shop!r}")
    settings = load_settings()
    differences = asyncio.run(_check(settings, shop))
    if differences:
        raise typer.Exit(1)


async def _check(settings: Settings, shop: str | None) -> int:
    from service.db import make_engine, make_sessionmaker, session_scope
    from service.domain import stats
    from service.domain.settings import get_shop_settings

    engine = make_engine(settings)
    found = 0
    try:
        async with session_scope(make_sessionmaker(engine)) as session:
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
    finally:
        await engine.dispose()
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
    shop: Annotated[str, typer.Option(help="The shop's myshopify.com domain.")],
) -> None:
    """Create an API key for a shop; the key is printed once, on the last line."""
    if not is_valid_shop_domain(shop):
        raise fail(f"not a shop domain: {shop!r} (expected name.myshopify.com)")
    settings = load_settings()
    key = asyncio.run(_api_key_create(settings, shop.lower()))
    typer.echo(f"API key for {shop.lower()} (store it now; it is not shown again):", err=True)
    typer.echo(key)


async def _api_key_create(settings: Settings, shop: str) -> str:
    from service.db import make_engine, make_sessionmaker, session_scope
    from service.domain.api_keys import create_api_key

    engine = make_engine(settings)
    try:
        async with session_scope(make_sessionmaker(engine)) as session:
            return await create_api_key(session, shop)
    finally:
        await engine.dispose()


@app.command()
def sync(
    shop: Annotated[str, typer.Option(help="The shop's myshopify.com domain (installed).")],
    reconcile: Annotated[
        bool, typer.Option(help="Only what changed since the last sync (updated_at:>), page by page.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, max=5000, help="Records per transaction (SQLite uses at most 100).")
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
    from service.db import make_engine, make_sessionmaker
    from service.sync import SyncError, sync_shop
    from shopify_client import ShopifyError

    bars: dict[str, Progress] = {}

    def progress(phase: str, done: int, total: int) -> None:
        bars.setdefault(phase, Progress(f"{shop}: {phase}")).update(done, total)

    def message(text: str) -> None:
        for bar in bars.values():
            bar.done()
        bars.clear()
        typer.echo(text, err=True)

    engine = make_engine(settings)
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0), transport=transport) as http:
            return await sync_shop(
                make_sessionmaker(engine),
                http,
                settings,
                shop,
                reconcile=reconcile,
                batch_size=batch_size,
                progress=progress,
                message=message,
            )
    except SyncError as exc:
        raise fail(str(exc), code=1) from exc
    except ShopifyError as exc:
        raise fail(f"Shopify: {exc} ({type(exc).__name__}); run the command again to resume", code=1) from exc
    finally:
        for bar in bars.values():
            bar.done()
        await engine.dispose()


webhooks_app = typer.Typer(help="Shop-specific webhook subscriptions (custom apps).", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("register")
def webhooks_register(
    shop: Annotated[str, typer.Option(help="The shop's myshopify.com domain (installed).")],
    url: Annotated[
        str | None,
        typer.Option(help="HTTPS address to deliver to (default: SHOPIFY_APP_URL + /webhooks/shopify)."),
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
    from service.db import make_engine, make_sessionmaker
    from service.subscriptions import SubscriptionError, register_webhooks
    from service.sync import SyncError
    from shopify_client import ShopifyError

    engine = make_engine(settings)
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0), transport=transport) as http:
            return await register_webhooks(make_sessionmaker(engine), http, settings, shop, url)
    except (SyncError, SubscriptionError) as exc:
        raise fail(str(exc), code=1) from exc
    except ShopifyError as exc:
        raise fail(f"Shopify: {exc} ({type(exc).__name__})", code=1) from exc
    finally:
        await engine.dispose()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
