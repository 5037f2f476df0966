"""Issue 8: webhook intake throughput and latency, the raw inbox insert rate, worker throughput.

    .venv/bin/python bench/intake_bench.py [--seconds 8] [--concurrency 1,8,32] [--worker-orders 5000]

1. A fresh database ``tierline_bench_intake`` (on the server of ``BENCH_DATABASE_URL``), migrated.
2. ``tierline serve`` as a subprocess in the production configuration (TIERLINE_ENV=production,
   random non-placeholder secrets, TIERLINE_WORKER=off) on 127.0.0.1:18xxx.
3. Signed ``orders/create`` deliveries (3 line items each, Shopify's REST shape) written to
   ``bench/results/intake_deliveries.tsv``; ``wrk`` with ``bench/wrk_intake.lua`` cycles through
   them (every request gets a new webhook id) at each concurrency for ``--seconds``:
   accepted/s, p50/p99 latency, non-200 answers.
4. The baseline: PostgreSQL's own client, ``pgbench`` (``bench/pgbench_intake.sql``, prepared
   statements), inserting the same inbox row (same columns and body, a new webhook id each time,
   ``INSERT … ON CONFLICT DO NOTHING RETURNING id`` in autocommit, as intake does) with as many
   clients as the concurrency: transactions/s, p50/p99 from its per-transaction log. Intake is
   reported as a ratio of it. A Python insert loop (psycopg, one thread and connection per client)
   is kept as a second reference: it is CPU-bound on its own interpreter before PostgreSQL is.
5. Worker: ``--worker-orders`` ``orders/create`` (3 line items) plus ``fulfillments/create`` and two
   ``fulfillment_events/create`` for ``--worker-fulfilled`` of them (in time order, or each
   order's together with ``--grouped-facts``) are put in the inbox, then
   ``tierline worker --drain`` runs as a subprocess: deliveries/s.
6. Peak RSS (VmHWM) of the server and of the worker; one markdown table with every figure.

The load generator, the server and PostgreSQL share the machine's cores. Asserts no timing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from bench.common import (
    API_VERSION,
    BENCH_SHOP,
    BIN,
    REPO,
    RESULTS,
    CpuMeter,
    CpuUsage,
    Latency,
    PeakRssPoller,
    PgbenchResult,
    PySpyAttach,
    Secrets,
    Server,
    WrkResult,
    background_note,
    bench_url,
    body_bytes,
    children_cpu_seconds,
    create_database,
    database_name,
    ensure_pgbench,
    ensure_wrk,
    exit_cleanly_on_sigterm,
    free_port,
    fulfillment_event_payload,
    fulfillment_payload,
    libpq_url,
    log,
    machine_summary,
    make_person,
    markdown_table,
    migrate,
    ms,
    order_payload,
    own_cpu_seconds,
    postgres_version,
    production_env,
    ratio,
    run_pgbench,
    run_wrk,
    shop_id_for,
    utc_header,
    with_database,
)
from shopify_client import webhook_hmac

SCRIPT = Path(__file__).resolve().parent / "wrk_intake.lua"
PGBENCH_SCRIPT = Path(__file__).resolve().parent / "pgbench_intake.sql"
WARMUP_SECONDS = 2

INSERT_SQL = """
INSERT INTO webhook_deliveries
    (webhook_id, event_id, topic, shop_id, shop_domain, api_version, triggered_at, received_at, body,
     status, attempts, next_attempt_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'pending', 0, %s)
ON CONFLICT (webhook_id) DO NOTHING
RETURNING id
"""

INBOX_COLUMNS = (
    "webhook_id",
    "event_id",
    "topic",
    "shop_id",
    "shop_domain",
    "api_version",
    "triggered_at",
    "received_at",
    "body",
    "status",
    "attempts",
    "next_attempt_at",
)


class Delivery:
    __slots__ = ("body", "event_id", "topic", "triggered_at", "webhook_id")

    def __init__(
        self, topic: str, payload: dict[str, Any], triggered_at: datetime, rng: random.Random
    ) -> None:
        self.topic = topic
        self.body = body_bytes(payload)
        self.triggered_at = triggered_at
        self.webhook_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))


def order_deliveries(
    rng: random.Random, count: int, *, customers: int, fulfilled: int = 0, grouped: bool = False
) -> list[Delivery]:
    """``count`` orders/create (3 line items) from ``customers`` repeat buyers; then, for the first
    ``fulfilled`` orders, fulfillments/create and fulfillment_events/create (in_transit, delivered),
    in time order."""
    people = [make_person(rng, 6_100_000_000_000 + i * 5) for i in range(customers)]
    weights = [min(rng.paretovariate(1.2), 30.0) for _ in people]
    start = datetime(2026, 10, 1, tzinfo=UTC)
    orders: list[tuple[int, datetime, Delivery]] = []
    for n in range(count):
        person = rng.choices(people, weights=weights)[0]
        created = start + timedelta(seconds=n * 37)
        order_id = 5_600_000_000_000 + n * 3
        payload = order_payload(
            rng,
            order_id=order_id,
            number=1001 + n,
            person=person,
            created=created,
            first_line_id=15_000_000_000_000 + n * 10,
            lines=3,
            cod=rng.random() < 0.4,
        )
        orders.append((order_id, created, Delivery("orders/create", payload, created, rng)))
    result = [d for _, _, d in orders]
    facts: list[Delivery] = []
    for n, (order_id, created, _) in enumerate(orders[:fulfilled]):
        fulfillment_id = 5_700_000_000_000 + n
        shipped = created + timedelta(hours=20)
        facts.append(
            Delivery(
                "fulfillments/create",
                fulfillment_payload(fulfillment_id, order_id, shipped, "confirmed"),
                shipped,
                rng,
            )
        )
        for step, status in enumerate(("in_transit", "delivered"), start=1):
            at = shipped + timedelta(days=step * 2)
            event = fulfillment_event_payload(
                5_800_000_000_000 + n * 2 + step, fulfillment_id, order_id, status, at
            )
            facts.append(Delivery("fulfillment_events/create", event, at, rng))
    # In the order Shopify sends them: by time, so one order's shipment and its two carrier
    # events (days apart) are not next to each other in the inbox. ``grouped`` keeps each order's
    # three together instead (the worst case for the worker's runs: every run holds one order).
    if not grouped:
        facts.sort(key=lambda d: d.triggered_at)
    return result + facts


def write_deliveries_file(path: Path, deliveries: list[Delivery], secret: str) -> int:
    """One delivery per line for the Lua script; returns the average body size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for d in deliveries:
            body = d.body.decode()
            if "\t" in body or "\n" in body:
                raise ValueError("a body with a raw tab or newline cannot go in the TSV file")
            out.write(
                f"{d.webhook_id}\t{d.event_id}\t{d.topic}\t{utc_header(d.triggered_at)}\t"
                f"{webhook_hmac(d.body, secret)}\t{body}\n"
            )
    return sum(len(d.body) for d in deliveries) // max(1, len(deliveries))


def count_inbox(url: str) -> dict[str, int]:
    """Inbox rows by status, leaving out the baseline's (``pgbench-`` webhook ids)."""
    with psycopg.connect(libpq_url(url)) as conn:
        return {
            str(s): int(n)
            for s, n in conn.execute(
                "SELECT status, count(*) FROM webhook_deliveries WHERE webhook_id NOT LIKE 'pgbench-%' "
                "GROUP BY status"
            )
        }


def raw_inserts(
    url: str, shop_id: int, deliveries: list[Delivery], concurrency: int, seconds: float, tag: str
) -> tuple[float, Latency]:
    """Inbox rows inserted by ``concurrency`` threads (a connection each) for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def worker(index: int) -> None:
        try:
            with psycopg.connect(libpq_url(url)) as conn:
                barrier.wait()
                n = 0
                while time.perf_counter() < deadline[0]:
                    d = deliveries[(index * 7919 + n) % len(deliveries)]
                    now = datetime.now(UTC)
                    started = time.perf_counter()
                    conn.execute(
                        INSERT_SQL,
                        (
                            f"{d.webhook_id}-{tag}-{index}-{n}",
                            d.event_id,
                            d.topic,
                            shop_id,
                            BENCH_SHOP,
                            API_VERSION,
                            d.triggered_at,
                            now,
                            d.body,
                            now,
                        ),
                    ).fetchone()
                    conn.commit()
                    latencies[index].append(time.perf_counter() - started)
                    n += 1
        except BaseException as exc:
            errors.append(exc)
            if not barrier.broken:
                barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + 3600
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    started = time.perf_counter()
    deadline[0] = started + seconds
    for thread in threads:
        thread.join(timeout=seconds + 30)
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"raw insert failed: {errors[0]!r}")
    flat = [x for per_thread in latencies for x in per_thread]
    return len(flat) / elapsed, Latency.of(flat)


def enqueue(url: str, shop_id: int, deliveries: list[Delivery]) -> None:
    """Put deliveries in the inbox as intake would have stored them (due now), oldest first."""
    now = datetime.now(UTC)
    stmt = "COPY webhook_deliveries ({}) FROM STDIN".format(", ".join(INBOX_COLUMNS))
    with psycopg.connect(libpq_url(url)) as conn, conn.cursor() as cur, cur.copy(stmt) as copy:
        for d in deliveries:
            copy.write_row(
                (
                    d.webhook_id,
                    d.event_id,
                    d.topic,
                    shop_id,
                    BENCH_SHOP,
                    API_VERSION,
                    d.triggered_at,
                    now,
                    d.body,
                    "pending",
                    0,
                    now,
                )
            )


@dataclass(frozen=True, slots=True)
class WorkerRun:
    seconds: float
    peak_rss_kb: int
    maxrss_kb: int
    stopped: bool  # stopped at the time limit (SIGTERM) before the inbox was empty
    cpu: float  # CPU seconds of the worker process (rusage)
    postgres_cpu: float  # CPU seconds of its PostgreSQL backends
    waited: float  # seconds the worker was runnable but waited for a CPU (other load)


def run_worker(url: str, env: dict[str, str], log_path: Path, time_limit: float) -> WorkerRun:
    """``tierline worker --drain`` as a subprocess, stopped with SIGTERM after ``time_limit`` s."""
    stopped = False
    with log_path.open("wb") as out, CpuMeter(url) as meter:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [str(BIN / "tierline"), "worker", "--drain"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        meter.add_pid(proc.pid)
        try:
            with PeakRssPoller(proc.pid) as poller:
                while True:
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                    if pid:
                        break
                    if not stopped and time.perf_counter() - started > time_limit:
                        stopped = True
                        proc.terminate()
                    time.sleep(0.02)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait(timeout=15)
        elapsed = time.perf_counter() - started
    if proc.returncode != 0 and not stopped:
        raise RuntimeError(f"tierline worker --drain exited with {proc.returncode}: see {log_path}")
    measured = meter.stop()
    cpu = usage.ru_utime + usage.ru_stime
    return WorkerRun(
        elapsed, poller.peak_kb, int(usage.ru_maxrss), stopped, cpu, measured.postgres, measured.process_wait
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=8, help="wrk duration per concurrency")
    parser.add_argument("--raw-seconds", type=float, default=5.0, help="raw insert duration per concurrency")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--deliveries", type=int, default=2000, help="distinct signed bodies in the wrk file")
    parser.add_argument("--worker-orders", type=int, default=3000)
    parser.add_argument("--worker-fulfilled", type=int, default=0)
    parser.add_argument(
        "--grouped-facts",
        action="store_true",
        help="enqueue each order's fulfillment and events together instead of in time order",
    )
    parser.add_argument(
        "--worker-time-limit",
        type=float,
        default=150.0,
        help="stop the worker (SIGTERM) after this many seconds",
    )
    parser.add_argument(
        "--wait-quiet", type=float, default=0.0, help="wait up to this many seconds for an idle machine"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also sample the server with py-spy (extra c=8 run)"
    )
    parser.add_argument(
        "--web-processes",
        type=int,
        default=2,
        help="TIERLINE_WEB_PROCESSES of the server (default 2: one per core of the reference machine)",
    )
    parser.add_argument("--port", type=int, default=18431)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    ensure_wrk()
    ensure_pgbench()
    begun = time.perf_counter()
    url = os.environ.get("BENCH_INTAKE_DATABASE_URL") or with_database(bench_url(), "tierline_bench_intake")
    RESULTS.mkdir(parents=True, exist_ok=True)
    log(f"machine: {machine_summary()}; PostgreSQL {postgres_version(with_database(url, 'postgres'))}")
    log(background_note(args.wait_quiet))
    create_database(url, drop=True)
    log(f"fresh database {database_name(url)}, migrated to {migrate(url)}")
    shop_id = shop_id_for(url)
    secret = Secrets.random()
    env = production_env(url, secret, TIERLINE_WEB_PROCESSES=str(args.web_processes))
    rng = random.Random(args.seed)

    deliveries = order_deliveries(rng, args.deliveries, customers=max(1, args.deliveries // 3))
    data_file = RESULTS / "intake_deliveries.tsv"
    body_size = write_deliveries_file(data_file, deliveries, secret.api_secret)
    log(
        f"{len(deliveries):,} signed orders/create deliveries (3 line items, {body_size:,} bytes on average) "
        f"in {data_file}"
    )

    intake: dict[int, WrkResult] = {}
    intake_cpu: dict[int, tuple[CpuUsage, float]] = {}
    raw_cpu: dict[int, tuple[CpuUsage, float]] = {}
    raw: dict[int, tuple[float, Latency]] = {}
    pgbench: dict[int, PgbenchResult] = {}
    pgbench_cpu: dict[int, CpuUsage] = {}
    variables = {"shop_id": str(shop_id), "body": deliveries[0].body.hex()}
    port = free_port(args.port)
    server = Server(env, port, RESULTS / "intake_server.log")
    profiled: WrkResult | None = None
    with server:
        log(
            f"tierline serve (production, worker off, TIERLINE_WEB_PROCESSES={args.web_processes}) "
            f"pids {server.pids()} on {server.base}"
        )
        warm = run_wrk(
            server.base,
            SCRIPT,
            connections=4,
            duration_s=WARMUP_SECONDS,
            script_args=[str(data_file), "warm", BENCH_SHOP],
        )
        log(f"  warm-up: {warm.requests:,} requests in {warm.duration:.1f} s")
        for c in levels:
            wrk_before = children_cpu_seconds()
            with CpuMeter(url, server.pids()) as meter:
                result = run_wrk(
                    server.base,
                    SCRIPT,
                    connections=c,
                    duration_s=args.seconds,
                    script_args=[str(data_file), f"c{c}", BENCH_SHOP],
                )
            intake[c] = result
            intake_cpu[c] = (meter.stop(), children_cpu_seconds() - wrk_before)
            log(
                f"  intake c={c}: {result.requests:,} requests, {result.ok_rate:,.0f} accepted/s, "
                f"p50 {ms(result.p50)} ms, p99 {ms(result.p99)} ms, non-200 {result.non200}, "
                f"socket errors {result.socket_errors}"
            )
            # The baseline right after, at the same concurrency: the load on a shared machine moves
            # from minute to minute, and the ratio should compare like with like.
            with CpuMeter(url) as meter:
                pgbench[c] = run_pgbench(
                    url,
                    PGBENCH_SCRIPT,
                    clients=c,
                    duration_s=args.seconds,
                    variables=variables,
                    log_dir=RESULTS,
                )
            pgbench_cpu[c] = meter.stop()
            result_pg = pgbench[c]
            log(
                f"  pgbench c={c}: {result_pg.rate:,.0f} inserts/s, p50 {ms(result_pg.latency.p50)} ms, "
                f"p99 {ms(result_pg.latency.p99)} ms, failed {result_pg.failed}; "
                f"intake at {ratio(intake[c].ok_rate, result_pg.rate)} of it"
            )
        server_rss = server.vmhwm_kb()
        if args.profile:
            attach = PySpyAttach(server.pids()[-1], args.seconds, RESULTS / "intake_server_pyspy.txt")
            if attach.available:
                profiled = run_wrk(
                    server.base,
                    SCRIPT,
                    connections=8,
                    duration_s=args.seconds,
                    script_args=[str(data_file), "profile", BENCH_SHOP],
                )
                report = attach.finish()
                if report:
                    (RESULTS / "intake_server_profile.md").write_text(report + "\n")
                    log("  server profile during intake at c=8 (not part of the figures):\n" + report)
            else:
                log("  py-spy not installed (.venv/bin/pip install py-spy): no server profile")
    stored = count_inbox(url)
    runs = [warm, *intake.values(), *([profiled] if profiled else [])]
    sent_ok = sum(r.requests - r.non200 for r in runs)
    log(
        f"server stopped; inbox holds {sum(stored.values()):,} rows for {sent_ok:,} answers 200 "
        "counted by wrk "
        f"(statuses {stored}; requests still in flight when a wrk run ends are stored but not counted)"
    )

    for c in levels:
        client_before = own_cpu_seconds()
        with CpuMeter(url) as meter:
            rate, latency = raw_inserts(url, shop_id, deliveries, c, args.raw_seconds, f"raw{c}")
        raw[c] = (rate, latency)
        raw_cpu[c] = (meter.stop(), own_cpu_seconds() - client_before)
        log(f"  raw insert c={c}: {rate:,.0f} inserts/s, p50 {ms(latency.p50)} ms, p99 {ms(latency.p99)} ms")

    log("worker: emptying the inbox ...")
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("TRUNCATE webhook_deliveries")
        conn.execute("VACUUM (ANALYZE) webhook_deliveries")
        # Write out what the intake runs left dirty, so that the worker's run does not pay for
        # their checkpoint (one run measured 1,411/s right after intake, 1,624/s on its own).
        conn.execute("CHECKPOINT")
    empty = run_worker(url, env, RESULTS / "worker_empty.log", 60)
    empty_seconds = empty.seconds
    log(
        f"  tierline worker --drain on an empty inbox (start-up and exit): {empty_seconds:.2f} s, "
        f"{empty.cpu:.2f} s CPU"
    )
    work = order_deliveries(
        random.Random(args.seed + 1),
        args.worker_orders,
        customers=max(1, args.worker_orders * 3 // 10),
        fulfilled=min(args.worker_fulfilled, args.worker_orders),
        grouped=args.grouped_facts,
    )
    enqueue(url, shop_id, work)
    topics: dict[str, int] = {}
    for d in work:
        topics[d.topic] = topics.get(d.topic, 0) + 1
    order_note = "each order's together" if args.grouped_facts else "in time order"
    log(f"  enqueued {len(work):,} deliveries: {topics}; fulfillments and events {order_note}")
    drained = run_worker(url, env, RESULTS / "worker_drain.log", args.worker_time_limit)
    drain_seconds, worker_hwm = drained.seconds, drained.peak_rss_kb
    after = count_inbox(url)
    applied = after.get("processed", 0)
    settled = sum(n for status, n in after.items() if status != "pending")
    per_second = settled / drain_seconds
    net = settled / max(1e-9, drain_seconds - empty_seconds)
    if drained.stopped:
        log(
            f"  stopped at the time limit ({args.worker_time_limit:g} s): "
            f"{settled:,} of {len(work):,} settled"
        )
    log(
        f"  worker: {settled:,} deliveries settled in {drain_seconds:.2f} s: {per_second:,.0f} deliveries/s "
        f"({net:,.0f}/s without start-up); statuses {after}; "
        f"peak RSS {worker_hwm / 1024:.0f} MiB (VmHWM; ru_maxrss {drained.maxrss_kb / 1024:.0f} MiB "
        "also counts the pre-exec copy of this process)"
    )
    if applied != settled:
        log(f"  WARNING: {settled - applied} deliveries were not processed (see the statuses above)")

    intake_cost = {
        c: (
            *intake_cpu[c][0].per(max(1, intake[c].requests - intake[c].non200)),
            intake_cpu[c][1] / max(1, intake[c].requests),
        )
        for c in levels
    }
    raw_cost = {
        c: (raw_cpu[c][1] / max(1, raw[c][1].count), raw_cpu[c][0].postgres / max(1, raw[c][1].count))
        for c in levels
    }
    worker_cpu = max(0.0, drained.cpu - empty.cpu) / max(1, settled)
    worker_pg = drained.postgres_cpu / max(1, settled)
    headers = ["measure", *[f"c={c}" for c in levels]]
    rows: list[list[object]] = [
        ["intake accepted/s (wrk)", *[f"{intake[c].ok_rate:,.0f}" for c in levels]],
        ["intake p50 ms", *[ms(intake[c].p50) for c in levels]],
        ["intake p99 ms", *[ms(intake[c].p99) for c in levels]],
        [
            "intake requests / non-200 / socket errors",
            *[f"{intake[c].requests:,} / {intake[c].non200} / {intake[c].socket_errors}" for c in levels],
        ],
        ["**pgbench** inbox INSERT (autocommit)/s", *[f"{pgbench[c].rate:,.0f}" for c in levels]],
        ["pgbench p50 ms", *[ms(pgbench[c].latency.p50) for c in levels]],
        ["pgbench p99 ms", *[ms(pgbench[c].latency.p99) for c in levels]],
        ["**intake / pgbench (throughput)**", *[ratio(intake[c].ok_rate, pgbench[c].rate) for c in levels]],
        ["intake / pgbench (p50 latency)", *[ratio(intake[c].p50, pgbench[c].latency.p50) for c in levels]],
        [
            "pgbench: PostgreSQL CPU ms per insert",
            *[ms(pgbench_cpu[c].postgres / max(1, pgbench[c].transactions)) for c in levels],
        ],
        [
            "intake / pgbench (PostgreSQL CPU per row)",
            *[
                ratio(intake_cost[c][1], pgbench_cpu[c].postgres / max(1, pgbench[c].transactions))
                for c in levels
            ],
        ],
        ["raw inbox INSERT+COMMIT/s (Python loop, psycopg)", *[f"{raw[c][0]:,.0f}" for c in levels]],
        ["raw (Python loop) / pgbench", *[ratio(raw[c][0], pgbench[c].rate) for c in levels]],
        ["raw insert p50 ms", *[ms(raw[c][1].p50) for c in levels]],
        ["raw insert p99 ms", *[ms(raw[c][1].p99) for c in levels]],
        ["intake / raw (throughput)", *[ratio(intake[c].ok_rate, raw[c][0]) for c in levels]],
        ["intake / raw (p50 latency)", *[ratio(intake[c].p50, raw[c][1].p50) for c in levels]],
        ["intake: server CPU ms per delivery", *[ms(intake_cost[c][0]) for c in levels]],
        ["intake: PostgreSQL CPU ms per delivery", *[ms(intake_cost[c][1]) for c in levels]],
        ["intake: wrk CPU ms per request", *[ms(intake_cost[c][2]) for c in levels]],
        [
            "intake bound on 2 idle cores (from CPU), /s",
            *[f"{bound(*intake_cost[c][:2]):,.0f}" for c in levels],
        ],
        [
            "server waited for a CPU (% of the run)",
            *[f"{intake_cpu[c][0].process_wait / intake_cpu[c][0].wall:.0%}" for c in levels],
        ],
        ["raw: PostgreSQL CPU ms per insert", *[ms(raw_cost[c][1]) for c in levels]],
        ["raw: client (psycopg) CPU ms per insert", *[ms(raw_cost[c][0]) for c in levels]],
        [
            "intake / raw (PostgreSQL CPU per row)",
            *[ratio(intake_cost[c][1], raw_cost[c][1]) for c in levels],
        ],
    ]
    worker_rows: list[list[object]] = [
        ["deliveries enqueued", f"{len(work):,} ({', '.join(f'{t} {n:,}' for t, n in topics.items())})"],
        [
            "processed / other statuses / still pending",
            f"{applied:,} / {settled - applied:,} / {after.get('pending', 0):,}",
        ],
        [
            "tierline worker --drain wall time",
            f"{drain_seconds:.2f} s" + (" (stopped at the time limit)" if drained.stopped else ""),
        ],
        ["start-up and exit (empty inbox)", f"{empty_seconds:.2f} s"],
        ["worker deliveries/s (wall)", f"{per_second:,.0f}"],
        ["worker deliveries/s (without start-up)", f"{net:,.0f}"],
        ["worker CPU ms per delivery (start-up excluded)", ms(worker_cpu)],
        ["PostgreSQL CPU ms per delivery", ms(worker_pg)],
        ["worker bound on 2 idle cores (from CPU), deliveries/s", f"{bound(worker_cpu, worker_pg):,.0f}"],
        ["worker waited for a CPU (% of the run)", f"{drained.waited / drain_seconds:.0%}"],
        ["worker peak RSS (VmHWM)", f"{worker_hwm / 1024:.0f} MiB"],
        ["server peak RSS (VmHWM, after all intake runs)", f"{server_rss / 1024:.0f} MiB"],
        ["average body (orders/create, 3 lines)", f"{body_size:,} bytes"],
    ]
    log("")
    log(
        f"### Intake ({args.seconds} s per level, wrk) and raw inbox insert "
        f"({args.raw_seconds:g} s per level, psycopg)"
    )
    log("")
    log(markdown_table(headers, rows))
    log("")
    log("### Worker")
    log("")
    log(markdown_table(["measure", "value"], worker_rows))
    log("")
    log(f"whole run {time.perf_counter() - begun:.0f} s")
    summary = {
        "intake": {str(c): vars_of(intake[c]) for c in levels},
        "raw": {str(c): {"rate": raw[c][0], "p50": raw[c][1].p50, "p99": raw[c][1].p99} for c in levels},
        "pgbench": {
            str(c): {"rate": pgbench[c].rate, "p50": pgbench[c].latency.p50, "p99": pgbench[c].latency.p99}
            for c in levels
        },
        "worker": {
            "deliveries": len(work),
            "settled": settled,
            "topics": topics,
            "seconds": drain_seconds,
            "empty_seconds": empty_seconds,
            "statuses": after,
            "peak_rss_kb": worker_hwm,
            "cpu_ms_per_delivery": worker_cpu * 1000,
            "postgres_cpu_ms_per_delivery": worker_pg * 1000,
        },
        "intake_cpu_ms": {str(c): [x * 1000 for x in intake_cost[c]] for c in levels},
        "raw_cpu_ms": {str(c): [x * 1000 for x in raw_cost[c]] for c in levels},
        "server_peak_rss_kb": server_rss,
    }
    (RESULTS / "intake.json").write_text(json.dumps(summary, indent=2))


def bound(process: float, postgres: float) -> float:
    """Operations/s that two otherwise idle cores could sustain, from CPU per operation: the
    Python process uses at most one core, the process and PostgreSQL together at most two."""
    if process <= 0:
        return 0.0
    return min(1.0 / process, 2.0 / (process + postgres))


def vars_of(result: WrkResult) -> dict[str, float]:
    return {
        "requests": result.requests,
        "duration": result.duration,
        "ok_rate": result.ok_rate,
        "non200": result.non200,
        "p50": result.p50,
        "p99": result.p99,
    }


if __name__ == "__main__":
    main()
