"""Issue 5: the order grid's read API on the seeded database.

    .venv/bin/python bench/api_bench.py [--seconds 8] [--concurrency 1,8]

1. ``tierline serve`` as a subprocess in the production configuration (random non-placeholder
   secrets, TIERLINE_WORKER=off) against the seeded database (``bench/seed.py``), on 127.0.0.1:18xxx;
   an API key from ``service.domain.api_keys.create_api_key``.
2. ``wrk`` with ``bench/wrk_api.lua``: ``POST /api/orders/enrich`` with 250 random order ids per
   body, ``POST /api/stats/customers`` with 250 random customer ids per body (bodies built in
   Lua) and ``GET /api/customers?tier=gold&limit=50``, at each concurrency: p50/p99 latency,
   requests/s, non-200 answers.
3. The SQL under each endpoint measured directly with psycopg in the same run:
   * "endpoint SQL": every statement one request sends (API-key lookup, settings, the queries),
     captured from an in-process request where psycopg's cursor sends them (sessions and the
     read pool alike), and replayed as the endpoint sends them (autocommit: these endpoints
     only read);
   * "hand SQL": one hand-written query returning the same figures (a floor).
   Both are timed right before and right after each endpoint's run at the first concurrency (half
   of ``--calls`` each): on a machine whose speed drifts over a run, each ratio compares the
   endpoint with its SQL at the same minute.
4. The ratios HTTP / SQL, and the goals of issue 18 at the first concurrency: enrich and stats
   p50 < 5 ms and < 4 ms, each within 2x its endpoint SQL; customers p50 < 4 ms.

If an endpoint answers 404/405 (not written yet), its HTTP and SQL rows are skipped. Asserts no
timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from bench.common import (
    BENCH_SHOP,
    RESULTS,
    CpuMeter,
    CpuUsage,
    Latency,
    PySpyAttach,
    Secrets,
    Server,
    WrkResult,
    background_note,
    bench_url,
    database_name,
    ensure_wrk,
    exit_cleanly_on_sigterm,
    free_port,
    http_json,
    libpq_url,
    log,
    machine_summary,
    markdown_table,
    ms,
    postgres_version,
    production_env,
    ratio,
    run_wrk,
    settings_for,
)

SCRIPT = Path(__file__).resolve().parent / "wrk_api.lua"
CUSTOMERS_PATH = "/api/customers?tier=gold&limit=50"
ENRICH_PATH = "/api/orders/enrich"
STATS_PATH = "/api/stats/customers"
FLOOR_PATH = "/api/settings"
IDS_PER_BODY = 250
WARMUP = 20

Statement = tuple[str, Any]

HAND_ENRICH = """
SELECT o.id, o.name, o.customer_id, o.email, o.phone, o.created_at, o.updated_at, o.processed_at,
       o.cancelled_at, o.financial_status, o.fulfillment_status, o.currency, o.total_amount,
       o.original_total, o.payment_method, o.tracking_status, o.delivered_at, o.tags, o.test,
       s.ltv, s.order_count, s.rto_count
FROM orders o
LEFT JOIN customer_stats s ON s.shop_id = o.shop_id AND s.customer_id = o.customer_id
WHERE o.shop_id = %(shop)s AND o.id = ANY(%(ids)s)
"""

HAND_STATS = """
SELECT s.customer_id, s.ltv, s.order_count, s.rto_count
FROM customer_stats s
WHERE s.shop_id = %(shop)s AND s.customer_id = ANY(%(ids)s)
"""

HAND_CUSTOMERS = """
SELECT s.customer_id, c.email,
       coalesce(c.phone, (SELECT coalesce(o.phone, o.shipping_address->>'phone', o.billing_address->>'phone')
                          FROM orders o WHERE o.shop_id = s.shop_id AND o.customer_id = s.customer_id
                          ORDER BY o.created_at DESC LIMIT 1)) AS phone,
       c.first_name, c.last_name, s.ltv, s.order_count, s.rto_count, s.last_order_at
FROM customer_stats s
LEFT JOIN customers c ON c.shop_id = s.shop_id AND c.id = s.customer_id
WHERE s.shop_id = %(shop)s AND s.ltv >= %(low)s AND s.ltv < %(high)s
ORDER BY s.ltv DESC, s.customer_id DESC
LIMIT 51
"""


async def make_api_key(url: str) -> str:
    from service.db import make_engine, make_sessionmaker, session_scope
    from service.domain.api_keys import create_api_key

    engine = make_engine(settings_for(url))
    try:
        async with session_scope(make_sessionmaker(engine)) as session:
            return await create_api_key(session, BENCH_SHOP)
    finally:
        await engine.dispose()


def capture_statements(
    url: str, secret: Secrets, api_key: str, requests: Sequence[tuple[str, str, object]]
) -> list[tuple[int, list[Statement]]]:
    """Run requests through an in-process app; return each one's status and SQL statements.

    Statements are taken where psycopg sends them (its cursor's ``execute``), which both of the
    app's paths reach: the engine's sessions and the read pool (``service.reads``). A pool
    connection's own ``SET TIME ZONE`` when it opens, and psycopg's own type look-ups (composed
    queries, on a connection's first use of a type) are not statements of the request."""
    from litestar.testing import TestClient

    from service.app import create_app
    from service.config import Settings

    settings = Settings.model_validate(
        {
            "DATABASE_URL": url,
            "TIERLINE_ENV": "production",
            "SHOPIFY_APP_URL": "https://bench.example.com",
            "SHOPIFY_API_KEY": secret.api_key,
            "SHOPIFY_API_SECRET": secret.api_secret,
            "TIERLINE_ENCRYPTION_KEY": secret.encryption_key,
            "TIERLINE_WORKER": "off",
        }
    )
    current: list[list[Statement]] = [[]]
    execute = psycopg.AsyncCursor.execute

    async def record(cursor: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if isinstance(query, str) and not query.startswith("SET "):
            current[0].append((query, params))
        return await execute(cursor, query, params, **kwargs)

    captured: list[tuple[int, list[Statement]]] = []
    psycopg.AsyncCursor.execute = record  # type: ignore[method-assign,assignment]
    try:
        with TestClient(app=create_app(settings, run_worker=False)) as client:
            # Once unrecorded first: the engine's first connection asks the server's version,
            # schema and settings, which no later request sends; and a key's first use is
            # written beside its request (``last_used_at``, then not again within a minute),
            # which is not the request's SQL either: it is waited for here.
            for method, path, body in requests[:1]:
                client.request(method, path, json=body, headers={"Authorization": f"Bearer {api_key}"})
            runtime = client.app.state.runtime
            for _ in range(500):
                if not runtime.background:
                    break
                time.sleep(0.01)
            for method, path, body in requests:
                current[0] = []
                response = client.request(
                    method, path, json=body, headers={"Authorization": f"Bearer {api_key}"}
                )
                captured.append((response.status_code, list(current[0])))
    finally:
        psycopg.AsyncCursor.execute = execute  # type: ignore[method-assign]
    return captured


def replay(conn: psycopg.Connection, statements: Sequence[Statement]) -> float:
    """Execute a request's statements as the endpoint does: each on its own (autocommit; the
    endpoints measured here only read, ``service.api.deps.READS_ONLY``)."""
    started = time.perf_counter()
    for statement, parameters in statements:
        cursor = conn.execute(statement, parameters)
        if cursor.description is not None:
            cursor.fetchall()
    return time.perf_counter() - started


def replay_timings(url: str, requests: Sequence[Sequence[Statement]], calls: int) -> list[float]:
    timings: list[float] = []
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for n in range(WARMUP + calls):
            elapsed = replay(conn, requests[n % len(requests)])
            if n >= WARMUP:
                timings.append(elapsed)
    return timings


def hand_timings(url: str, query: str, params: Sequence[dict[str, Any]], calls: int) -> list[float]:
    timings: list[float] = []
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for n in range(WARMUP + calls):
            started = time.perf_counter()
            conn.execute(query, params[n % len(params)]).fetchall()
            elapsed = time.perf_counter() - started
            if n >= WARMUP:
                timings.append(elapsed)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=8, help="wrk duration per endpoint and concurrency")
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--calls", type=int, default=200, help="direct SQL calls per measure")
    parser.add_argument("--port", type=int, default=18451)
    parser.add_argument(
        "--wait-quiet", type=float, default=0.0, help="wait up to this many seconds for an idle machine"
    )
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also sample the server with py-spy")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    ensure_wrk()
    url = bench_url()
    rng = random.Random(args.seed)
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("SELECT id FROM shops WHERE domain = %s", (BENCH_SHOP,)).fetchone()
        if row is None:
            raise SystemExit(f"{database_name(url)} is not seeded: run bench/seed.py first")
        shop_id = int(row[0])
        order_ids = [int(r[0]) for r in conn.execute("SELECT id FROM orders WHERE shop_id = %s", (shop_id,))]
        customer_ids = [
            int(r[0]) for r in conn.execute("SELECT id FROM customers WHERE shop_id = %s", (shop_id,))
        ]
        conn.execute("DELETE FROM api_keys WHERE shop_id = %s", (shop_id,))
        conn.commit()
    log(f"machine: {machine_summary()}; PostgreSQL {postgres_version(url)}")
    log(f"API bench on {database_name(url)}: {len(order_ids):,} orders")
    RESULTS.mkdir(parents=True, exist_ok=True)
    ids_file = RESULTS / "api_order_ids.txt"
    ids_file.write_text("\n".join(str(i) for i in rng.sample(order_ids, min(50_000, len(order_ids)))) + "\n")
    customer_ids_file = RESULTS / "api_customer_ids.txt"
    customer_ids_file.write_text(
        "\n".join(str(i) for i in rng.sample(customer_ids, min(50_000, len(customer_ids)))) + "\n"
    )

    from service.domain.settings import ShopSettings, get_shop_settings
    from service.domain.tiers import ltv_bounds

    async def shop_settings() -> ShopSettings:
        from service.db import make_engine, make_sessionmaker

        engine = make_engine(settings_for(url))
        try:
            async with make_sessionmaker(engine)() as session:
                return await get_shop_settings(session, shop_id)
        finally:
            await engine.dispose()

    thresholds = asyncio.run(shop_settings()).tier_thresholds
    low, high = ltv_bounds("gold", thresholds)
    secret = Secrets.random()
    api_key = asyncio.run(make_api_key(url))
    env = production_env(url, secret)
    bodies = [{"orderIds": [str(i) for i in rng.sample(order_ids, IDS_PER_BODY)]} for _ in range(20)]
    stats_bodies = [
        {"customerIds": [str(i) for i in rng.sample(customer_ids, IDS_PER_BODY)]} for _ in range(20)
    ]

    # Each endpoint's statements, captured in process (before the server starts), and the
    # hand-written queries' parameters: both are timed around the endpoint's HTTP run below.
    log("SQL under the endpoints, captured in process:")
    captured_sql: dict[str, list[list[Statement]]] = {}
    statements_per_request: dict[str, int] = {}
    requests: dict[str, list[tuple[str, str, object]]] = {
        "enrich": [("POST", ENRICH_PATH, body) for body in bodies],
        "stats": [("POST", STATS_PATH, body) for body in stats_bodies],
        "customers": [("GET", CUSTOMERS_PATH, None)],
        "floor": [("GET", FLOOR_PATH, None)],
    }
    for name, wanted in requests.items():
        captured = capture_statements(url, secret, api_key, wanted)
        ok = [statements for status, statements in captured if status == 200]
        if not ok:
            log(f"  {name}: the in-process request did not answer 200; captured SQL skipped")
            continue
        counts = sorted({len(statements) for statements in ok})
        if len(counts) > 1:
            log(f"  {name}: requests sent {counts} statements (not the same SQL each time)")
        captured_sql[name] = ok
        statements_per_request[name] = len(ok[0])
        (RESULTS / f"api_{name}_statements.sql").write_text(
            "\n\n".join(f"-- params: {json.dumps(p, default=str)[:300]}\n{s};" for s, p in ok[0])
        )
        log(f"  {name}: {len(ok[0])} statements per request")
    hand_queries: dict[str, tuple[str, list[dict[str, Any]]]] = {
        "enrich": (HAND_ENRICH, [{"shop": shop_id, "ids": [int(i) for i in b["orderIds"]]} for b in bodies]),
        "stats": (
            HAND_STATS,
            [{"shop": shop_id, "ids": [int(i) for i in b["customerIds"]]} for b in stats_bodies],
        ),
        "customers": (HAND_CUSTOMERS, [{"shop": shop_id, "low": low, "high": high}]),
    }
    endpoint_sql: dict[str, Latency] = {}
    hand_sql: dict[str, Latency] = {}

    def time_sql(name: str, calls: int) -> tuple[list[float], list[float]]:
        """The endpoint's own statements and its hand-written query, ``calls`` times each."""
        own = replay_timings(url, captured_sql[name], calls) if name in captured_sql else []
        hand = hand_timings(url, *hand_queries[name], calls) if name in hand_queries else []
        return own, hand

    http: dict[tuple[str, int], WrkResult] = {}
    http_cpu: dict[tuple[str, int], CpuUsage] = {}
    available: dict[str, bool] = {}
    port = free_port(args.port)
    server = Server(env, port, RESULTS / "api_server.log")
    with server:
        log(f"tierline serve (production, worker off) pid {server.pid} on {server.base}")
        status, answer = http_json(
            "POST", server.base + ENRICH_PATH, body=bodies[0], headers={"Authorization": f"Bearer {api_key}"}
        )
        items = len(answer.get("items", [])) if isinstance(answer, dict) else 0
        available["enrich"] = status == 200
        log(f"  POST {ENRICH_PATH} (250 ids): HTTP {status}, {items} items")
        status, answer = http_json(
            "POST",
            server.base + STATS_PATH,
            body=stats_bodies[0],
            headers={"Authorization": f"Bearer {api_key}"},
        )
        items = len(answer.get("stats", {})) if isinstance(answer, dict) else 0
        available["stats"] = status == 200
        log(f"  POST {STATS_PATH} (250 ids): HTTP {status}, {items} customers")
        status, answer = http_json(
            "GET", server.base + CUSTOMERS_PATH, headers={"Authorization": f"Bearer {api_key}"}
        )
        items = len(answer.get("items", [])) if isinstance(answer, dict) else 0
        available["customers"] = status == 200
        status, _ = http_json("GET", server.base + FLOOR_PATH, headers={"Authorization": f"Bearer {api_key}"})
        available["floor"] = status == 200
        log(f"  GET {CUSTOMERS_PATH}: HTTP {status}, {items} items")
        if not all(available.values()):
            log(
                f"  endpoints not available yet: {[k for k, v in available.items() if not v]} "
                "(HTTP rows skipped)"
            )
        log("  " + background_note(args.wait_quiet))
        runs = {
            "enrich": ["post", api_key, ENRICH_PATH, "orderIds", str(ids_file), str(IDS_PER_BODY), "50"],
            "stats": [
                *("post", api_key, STATS_PATH, "customerIds"),
                *(str(customer_ids_file), str(IDS_PER_BODY), "50"),
            ],
            "customers": ["get", api_key, CUSTOMERS_PATH],
            # The same authentication and no query of its own: what every endpoint pays at least.
            "floor": ["get", api_key, FLOOR_PATH],
        }
        for name, script_args in runs.items():
            if not available[name]:
                continue
            run_wrk(server.base, SCRIPT, connections=2, duration_s=2, script_args=script_args)
            for c in levels:
                # The SQL baselines are timed right before and right after the first concurrency's
                # run, half of the calls each: a machine whose speed drifts over the minute a
                # whole run takes is compared with itself.
                if c == levels[0]:
                    own_before, hand_before = time_sql(name, (args.calls + 1) // 2)
                with CpuMeter(url, [server.pid]) as meter:
                    result = run_wrk(
                        server.base, SCRIPT, connections=c, duration_s=args.seconds, script_args=script_args
                    )
                http[(name, c)] = result
                http_cpu[(name, c)] = meter.stop()
                if c == levels[0]:
                    own_after, hand_after = time_sql(name, args.calls // 2)
                    if own_before:
                        endpoint_sql[name] = Latency.of(own_before + own_after)
                    if hand_before:
                        hand_sql[name] = Latency.of(hand_before + hand_after)
                log(
                    f"  {name} c={c}: {result.requests:,} requests, {result.rate:,.1f}/s, "
                    f"p50 {ms(result.p50)} ms, "
                    f"p99 {ms(result.p99)} ms, non-200 {result.non200}, socket errors {result.socket_errors}"
                )
        server_rss = server.vmhwm_kb()
        if args.profile:
            for name, script_args in runs.items():
                if not available[name]:
                    continue
                attach = PySpyAttach(server.pid, args.seconds, RESULTS / f"api_{name}_pyspy.txt")
                if not attach.available:
                    log("  py-spy not installed (.venv/bin/pip install py-spy): no server profile")
                    break
                run_wrk(server.base, SCRIPT, connections=1, duration_s=args.seconds, script_args=script_args)
                report = attach.finish()
                if report:
                    (RESULTS / f"api_{name}_profile.md").write_text(report + "\n")
                    log(f"  server profile during {name} at c=1 (not part of the figures):\n{report}")

    for name, latency in endpoint_sql.items():
        statements = statements_per_request[name]
        log(f"  {name} endpoint SQL ({statements} statements per request): {latency.describe()}")
    for name, latency in hand_sql.items():
        log(f"  {name} hand-written SQL (1 statement): {latency.describe()}")

    names = ("enrich", "stats", "customers", "floor")
    labels = {
        "enrich": f"POST {ENRICH_PATH} (250 ids)",
        "stats": f"POST {STATS_PATH} (250 ids)",
        "customers": f"GET {CUSTOMERS_PATH}",
        "floor": f"GET {FLOOR_PATH} (authentication only)",
    }
    http_rows: list[list[object]] = []
    for name in names:
        for c in levels:
            measured = http.get((name, c))
            if measured is None:
                http_rows.append([labels[name], c, "not available", "", "", "", "", "", ""])
                continue
            usage = http_cpu[(name, c)]
            server_cpu, pg_cpu = usage.per(max(1, measured.requests))
            http_rows.append(
                [
                    labels[name],
                    c,
                    ms(measured.p50),
                    ms(measured.p99),
                    f"{measured.rate:,.1f}",
                    f"{measured.requests:,} / {measured.non200}",
                    ms(server_cpu),
                    ms(pg_cpu),
                    f"{usage.process_wait / usage.wall:.0%}",
                ]
            )
    sql_rows: list[list[object]] = []
    for name in names:
        one = http.get((name, levels[0]))
        captured_latency = endpoint_sql.get(name)
        hand = hand_sql.get(name)
        sql_rows.append(
            [
                labels[name],
                f"{ms(captured_latency.p50)} / {ms(captured_latency.p99)} "
                f"({statements_per_request[name]} stmts)"
                if captured_latency
                else "n/a",
                f"{ms(hand.p50)} / {ms(hand.p99)}" if hand else "n/a",
                ratio(one.p50, captured_latency.p50) if one and captured_latency else "n/a",
                ratio(one.p50, hand.p50) if one and hand else "n/a",
            ]
        )
    log("")
    log(f"### Read API over HTTP (wrk, {args.seconds} s per run)")
    log("")
    log(
        markdown_table(
            [
                "endpoint",
                "conns",
                "p50 ms",
                "p99 ms",
                "requests/s",
                "requests / non-200",
                "server CPU ms/req",
                "PostgreSQL CPU ms/req",
                "server waited for CPU",
            ],
            http_rows,
        )
    )
    log("")
    log(f"### SQL under each endpoint (psycopg, {args.calls} calls) and ratios at c={levels[0]}")
    log("")
    log(
        markdown_table(
            [
                "endpoint",
                "endpoint SQL p50 / p99 ms",
                "hand SQL p50 / p99 ms",
                "HTTP p50 / endpoint SQL p50",
                "HTTP p50 / hand SQL p50",
            ],
            sql_rows,
        )
    )
    log("")
    # Issue 18's goals at the first concurrency: p50 under a bound, and within 2x the endpoint's SQL.
    goals = {"enrich": (0.005, True), "stats": (0.004, True), "customers": (0.004, False)}
    for name, (bound, within_two) in goals.items():
        one = http.get((name, levels[0]))
        if one is None:
            continue
        verdict = f"{'meets' if one.p50 < bound else 'misses'} < {bound * 1000:g} ms"
        captured_latency = endpoint_sql.get(name)
        if within_two and captured_latency is not None:
            times = one.p50 / captured_latency.p50
            verdict += f"; {times:.2f}x its SQL: {'meets' if times <= 2 else 'misses'} within 2x"
        log(f"{name} p50 at c={levels[0]}: {ms(one.p50)} ms ({verdict})")
    log(f"server peak RSS (VmHWM): {server_rss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
