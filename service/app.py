"""The composition root: ``create_app(settings)`` wires engine, HTTP client, worker and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import msgspec
from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.plugins.pydantic import PydanticPlugin
from pydantic import BaseModel

from service.api.compliance import ComplianceController
from service.api.customers import CustomerController
from service.api.deliveries import DeliveryController
from service.api.deps import provide_reads, provide_runtime, provide_session, provide_shop
from service.api.health import health, metrics, ready
from service.api.oauth import OAuthController
from service.api.orders import OrderController
from service.api.reports import ReportController
from service.api.schema_docs import WireTypes, render_plugin, schema_asset
from service.api.settings import SettingsController
from service.api.shop import ShopController
from service.api.stats import customer_stats, recalculate, tier_suggestion
from service.api.stats_path import stats_path
from service.config import Settings
from service.db import make_engine, make_sessionmaker
from service.errors import exception_handlers
from service.http import http_client as shopify_http
from service.jobs import JobRunner
from service.limits import BodyBudget, request_limits
from service.metrics import record_settled, timing_middleware
from service.reads import Reads
from service.runtime import Runtime
from service.ui.pages import PageController, app_root, static_files_router, template_config
from service.writeback import WriteBackSender
from webhooks.handlers import build_router
from webhooks.intake import Intake, intake_path, receive_webhook
from webhooks.worker import InboxWorker

logger = logging.getLogger(__name__)

VERSION = "0.1.0"


def model_json(model: BaseModel) -> msgspec.Raw:
    """A response model as JSON in one pass (pydantic-core writes the bytes, msgspec embeds them),
    instead of Python objects first and JSON from those (docs/benchmarks.md)."""
    return msgspec.Raw(model.__pydantic_serializer__.to_json(model, by_alias=True))


def create_app(
    settings: Settings | None = None,
    *,
    http_client: httpx.AsyncClient | None = None,
    run_worker: bool | None = None,
    fast_paths: bool = True,
) -> Litestar:
    """Build the application. Nothing connects until the lifespan starts.

    ``fast_paths=False`` leaves out the plain ASGI paths in front of the routes (below): every
    request is then answered by its Litestar route, which tests compare them with."""
    settings = (settings or Settings()).with_dev_fallbacks()
    inline_worker = settings.worker == "inline" if run_worker is None else run_worker

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = make_engine(settings)
        sessionmaker = make_sessionmaker(engine)
        http = http_client or shopify_http(httpx.Timeout(10.0, connect=5.0))
        runtime = Runtime(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            http=http,
            reads=Reads(engine, sessionmaker, settings),
            write_gate=asyncio.Lock() if settings.is_sqlite else None,
        )
        await runtime.reads.open()
        app.state.runtime = runtime
        app.state.intake = intake = Intake.start(runtime)
        worker_task: asyncio.Task[None] | None = None
        worker: InboxWorker | None = None
        job_runner: JobRunner | None = None
        jobs_task: asyncio.Task[None] | None = None
        sender: WriteBackSender | None = None
        sender_task: asyncio.Task[None] | None = None
        if inline_worker:
            worker = InboxWorker(
                sessionmaker,
                build_router(),
                settings,
                on_settled=record_settled,
                write_gate=runtime.write_gate,
            )
            runtime.notify_worker = worker.notify
            worker_task = asyncio.create_task(worker.run(), name="tierline-inbox-worker")
            # Backfills and reconciliations, beside the inbox (docs/shopify-app.md).
            job_runner = JobRunner(sessionmaker, http, settings, write_gate=runtime.write_gate)
            runtime.notify_jobs = job_runner.notify
            jobs_task = asyncio.create_task(job_runner.run(), name="tierline-job-runner")
            # Write-back to Shopify (docs/shopify-app.md), beside both.
            sender = WriteBackSender(sessionmaker, http, settings, write_gate=runtime.write_gate)
            sender_task = asyncio.create_task(sender.run(), name="tierline-write-back")
        try:
            yield
        finally:
            if sender is not None and sender_task is not None:
                sender.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender_task
            if job_runner is not None and jobs_task is not None:
                job_runner.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await jobs_task
            await intake.close()
            await runtime.settle_background()
            if worker is not None and worker_task is not None:
                worker.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker_task
            if http_client is None:
                await http.aclose()
            await runtime.reads.close()
            await engine.dispose()

    app = Litestar(
        route_handlers=[
            receive_webhook,
            health,
            ready,
            metrics,
            DeliveryController,
            ComplianceController,
            OAuthController,
            SettingsController,
            ShopController,
            OrderController,
            CustomerController,
            ReportController,
            customer_stats,
            recalculate,
            tier_suggestion,
            app_root,
            PageController,
            static_files_router(),
            schema_asset,
        ],
        dependencies={
            "runtime": Provide(provide_runtime, sync_to_thread=False),
            "db_session": Provide(provide_session),
            "reads": Provide(provide_reads, sync_to_thread=False),
            "shop": Provide(provide_shop),
        },
        lifespan=[lifespan],
        exception_handlers=exception_handlers(),
        template_config=template_config(),
        request_max_body_size=settings.max_body,
        plugins=[PydanticPlugin(prefer_alias=True), WireTypes()],
        type_encoders={BaseModel: model_json},
        openapi_config=OpenAPIConfig(
            title="tierline",
            version=VERSION,
            description="Customer value for Shopify merchants: LTV, spend tiers and COD RTO counts.",
            path="/schema",
            render_plugins=[render_plugin()],
        ),
        logging_config=None,
        debug=False,
    )
    # Around routing (as Litestar's OpenTelemetry plugin does): the limits hold for every request,
    # matched or not, and unmatched requests and refusals are timed too.
    app.state.body_budget = BodyBudget(settings.body_budget)
    # POST /webhooks/shopify is answered by a plain ASGI path in front of Litestar's routing
    # (webhooks.intake), inside the limits: every delivery takes it, every other request falls
    # through. POST /api/stats/customers has one too (service.api.stats_path), for the requests
    # the order grid sends; the others fall through to its route.
    routes = app.asgi_handler
    if fast_paths:
        routes = intake_path(stats_path(routes, app.state), app.state)
    limited = request_limits(
        routes,
        budget=app.state.body_budget,
        body_timeout=settings.body_timeout_seconds,
        max_body=settings.max_body,
    )
    app.asgi_handler = timing_middleware(limited)
    return app
