"""Where intake's CPU goes per delivery, in process: the ASGI application without the HTTP server.

    .venv/bin/python bench/intake_profile.py [--requests 4000] [--concurrency 32]

A fresh database ``tierline_bench_intake_profile``; ``create_app`` in the production
configuration (worker off) with its lifespan running in this process; signed ``orders/create``
deliveries (3 line items) sent straight to the ASGI callable by ``--concurrency`` coroutines, each
request as uvicorn would pass it (scope, one body message). Two passes:

1. unprofiled: process CPU time (this process: the application, psycopg, the event loop; not
   PostgreSQL) per delivery, and deliveries/s;
2. cProfile with a CPU-time timer (``time.thread_time``): own time per function, grouped into
   stages by module, scaled to the CPU per delivery of pass 1, in ms per delivery.

Logging is configured as ``tierline serve`` configures it in production (JSON lines, written to
``bench/results/intake_profile_server.log``), and the loop is uvloop, as under uvicorn. The HTTP
server's own work (uvicorn's protocol, parsing and writing the socket) is not here: it is
the server CPU per delivery of ``make bench`` minus this figure. Asserts no timing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import uvloop

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    RESULTS,
    Secrets,
    background_note,
    bench_url,
    create_database,
    database_name,
    log,
    markdown_table,
    migrate,
    with_database,
)
from bench.intake_bench import order_deliveries
from shopify_client import webhook_hmac

#: Module path fragments → stage, first match wins (own time of each function).
STAGES: tuple[tuple[str, str], ...] = (
    ("litestar/", "Litestar (routing, DI, request, response)"),
    ("pydantic", "pydantic"),
    ("msgspec", "Litestar (routing, DI, request, response)"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("psycopg", "psycopg"),
    ("logging/", "logging"),
    ("service/log.py", "logging"),
    ("prometheus_client", "metrics (counters, histogram)"),
    ("service/metrics.py", "metrics (counters, histogram)"),
    ("service/limits.py", "request limits (body budget, deadline)"),
    ("hmac", "signature (HMAC, replay check)"),
    ("shopify_client", "signature (HMAC, replay check)"),
    ("webhooks/envelope.py", "envelope (headers)"),
    ("webhooks/intake.py", "intake (ASGI path, group insert)"),
    ("service/domain/inbox.py", "intake (ASGI path, group insert)"),
    ("asyncio", "event loop, tasks, timeouts"),
    ("selectors", "event loop, tasks, timeouts"),
    ("uvloop", "event loop, tasks, timeouts"),
    ("<built-in method select", "event loop, tasks, timeouts"),
    ("contextlib", "event loop, tasks, timeouts"),
)


def stage_of(filename: str, name: str) -> str:
    where = f"{filename}:{name}"
    for fragment, stage in STAGES:
        if fragment in where:
            return stage
    if filename == "~":
        if "hmac" in name or "openssl" in name or "digest" in name:
            return "signature (HMAC, replay check)"
        if "select" in name or "epoll" in name or "poll" in name:
            return "event loop, tasks, timeouts"
        return "built-ins (other)"
    if "bench/" in filename:
        return "load generator (this script)"
    return "other"


class Driver:
    """Sends requests to an ASGI app the way an HTTP server would, one body message each."""

    def __init__(self, app: Any, requests: list[tuple[list[tuple[bytes, bytes]], bytes]]) -> None:
        self.app = app
        self.requests = requests
        self.next = 0
        self.statuses: dict[int, int] = defaultdict(int)

    async def one(self, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.statuses[int(message["status"])] += 1

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/webhooks/shopify",
            "raw_path": b"/webhooks/shopify",
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        await self.app(scope, receive, send)

    async def run(self, count: int, concurrency: int) -> None:
        async def worker() -> None:
            while self.next < count:
                headers, body = self.requests[self.next % len(self.requests)]
                tagged = [*headers, (b"x-shopify-webhook-id", f"p{os.getpid()}-{self.next}".encode())]
                self.next += 1
                await self.one(tagged, body)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def run(args: argparse.Namespace, url: str) -> None:
    from service.app import create_app
    from service.config import Settings

    secret = Secrets.random()
    settings = Settings.model_validate(
        {
            "DATABASE_URL": url,
            "TIERLINE_ENV": "production",
            "SHOPIFY_API_KEY": secret.api_key,
            "SHOPIFY_API_SECRET": secret.api_secret,
            "TIERLINE_ENCRYPTION_KEY": secret.encryption_key,
            "SHOPIFY_APP_URL": "https://bench.example.com",
            "TIERLINE_WORKER": "off",
        }
    )
    deliveries = order_deliveries(random.Random(18), 500, customers=150)
    requests = [
        (
            [
                (b"host", b"127.0.0.1:8000"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(d.body)).encode()),
                (b"x-shopify-topic", d.topic.encode()),
                (b"x-shopify-hmac-sha256", webhook_hmac(d.body, secret.api_secret).encode()),
                (b"x-shopify-shop-domain", b"bench-shop.myshopify.com"),
                (b"x-shopify-api-version", b"2026-04"),
                (b"x-shopify-event-id", d.event_id.encode()),
                (b"x-shopify-triggered-at", d.triggered_at.isoformat().encode()),
            ],
            d.body,
        )
        for d in deliveries
    ]
    app = create_app(settings)
    async with app.lifespan():
        driver = Driver(app, requests)
        await driver.run(200, args.concurrency)  # warm-up: shop row, pool, prepared statements
        driver.next = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await driver.run(args.requests, args.concurrency)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        per = cpu / args.requests
        log(
            f"unprofiled: {args.requests:,} deliveries at concurrency {args.concurrency} in {wall:.2f} s "
            f"({args.requests / wall:,.0f}/s), {per * 1000:.3f} ms of process CPU per delivery; "
            f"statuses {dict(driver.statuses)}"
        )
        driver.next = 0
        driver.statuses.clear()
        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
        await driver.run(args.requests, args.concurrency)
        profiler.disable()
    stats = pstats.Stats(profiler)
    own: dict[str, float] = defaultdict(float)
    functions: list[tuple[float, str]] = []
    total = 0.0
    for (filename, _line, name), (_cc, _nc, tottime, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        total += tottime
        own[stage_of(filename, name)] += tottime
        functions.append((tottime, f"{name} ({short(filename)})"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stats.dump_stats(str(RESULTS / "intake_profile.pstats"))
    rows = [
        [stage, f"{seconds / total:.0%}", f"{seconds / total * per * 1000:.3f}"]
        for stage, seconds in sorted(own.items(), key=lambda kv: -kv[1])
    ]
    rows.append(["total", "100%", f"{per * 1000:.3f}"])
    log("")
    log(f"### Intake in process: CPU per delivery by stage (concurrency {args.concurrency})")
    log("")
    log(markdown_table(["stage (own time of its functions)", "share", "ms per delivery"], rows))
    log("")
    top = sorted(functions, reverse=True)[: args.top]
    log(
        markdown_table(
            ["function (own time)", "ms per delivery"],
            [[label, f"{seconds / total * per * 1000:.3f}"] for seconds, label in top],
        )
    )


def short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3", "wt-perf/", "/work/"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
    return filename


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    log(background_note(0))
    from service.log import configure_logging

    RESULTS.mkdir(parents=True, exist_ok=True)
    # As `tierline serve` in production: one JSON line per delivery (to a file here).
    log_file = (RESULTS / "intake_profile_server.log").open("w")
    configure_logging(production=True, stream=log_file)
    url = with_database(bench_url(), "tierline_bench_intake_profile")
    create_database(url, drop=True)
    log(f"fresh database {database_name(url)}, migrated to {migrate(url)}")
    # As uvicorn runs it: on uvloop (its internals are C, counted under "built-ins").
    uvloop.run(run(args, url))
    log_file.close()


if __name__ == "__main__":
    main()
