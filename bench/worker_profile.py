"""Profile the inbox worker: where ``tierline worker --drain`` spends its time.

    .venv/bin/python bench/worker_profile.py [--orders 1500] [--fulfilled 300]

Puts the same kind of deliveries as ``bench/intake_bench.py`` (``orders/create`` with 3 line items,
``fulfillments/create``, ``fulfillment_events/create``) in a fresh database
``tierline_bench_profile``, then:

1. samples ``tierline worker --drain`` (subprocess, production configuration) with py-spy: the
   Python CPU profile, top functions by own time and by inclusive time;
2. runs ``InboxWorker.drain`` in-process under pyinstrument (async-aware, wall clock), on a second
   batch, to attribute waiting on PostgreSQL to the code that awaits it.

py-spy and pyinstrument are measuring tools, not project dependencies:
``.venv/bin/pip install py-spy pyinstrument``. Raw outputs go to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from bench.common import (
    BIN,
    REPO,
    RESULTS,
    Secrets,
    bench_url,
    create_database,
    database_name,
    exit_cleanly_on_sigterm,
    libpq_url,
    log,
    migrate,
    production_env,
    py_spy_path,
    settings_for,
    shop_id_for,
    summarize_pyspy,
    with_database,
)
from bench.intake_bench import enqueue, order_deliveries


async def drain_in_process(url: str) -> float:
    from service.db import make_engine, make_sessionmaker
    from webhooks.handlers import build_router
    from webhooks.worker import InboxWorker

    settings = settings_for(url)
    engine = make_engine(settings)
    try:
        worker = InboxWorker(make_sessionmaker(engine), build_router(), settings)
        started = time.perf_counter()
        count = await worker.drain()
        elapsed = time.perf_counter() - started
        log(f"  in-process drain: {count:,} deliveries in {elapsed:.2f} s ({count / elapsed:,.0f}/s)")
        return elapsed
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=1500)
    parser.add_argument("--fulfilled", type=int, default=300)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    url = with_database(bench_url(), "tierline_bench_profile")
    create_database(url, drop=True)
    log(f"fresh database {database_name(url)}, migrated to {migrate(url)}")
    shop_id = shop_id_for(url)
    env = production_env(url, Secrets.random())
    RESULTS.mkdir(parents=True, exist_ok=True)

    work = order_deliveries(
        random.Random(11), args.orders, customers=max(1, args.orders * 3 // 10), fulfilled=args.fulfilled
    )
    enqueue(url, shop_id, work)
    log(f"enqueued {len(work):,} deliveries")
    py_spy = py_spy_path()
    if py_spy is None:
        log("py-spy is not installed (.venv/bin/pip install py-spy): skipping the CPU profile")
    else:
        raw = RESULTS / "worker_pyspy.txt"
        command = [
            py_spy,
            "record",
            "--format",
            "raw",
            "--rate",
            str(args.rate),
            "--output",
            str(raw),
            "--nonblocking",
        ]
        command += ["--", str(BIN / "tierline"), "worker", "--drain"]
        started = time.perf_counter()
        completed = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        wall = time.perf_counter() - started
        if completed.returncode != 0 or not raw.exists():
            log(f"py-spy failed ({completed.returncode}): {completed.stderr[-2000:]}")
        else:
            log(f"  py-spy run: {len(work):,} deliveries in {wall:.2f} s (with py-spy attached)")
            report = summarize_pyspy(raw, args.rate, wall)
            (RESULTS / "worker_pyspy_summary.md").write_text(report + "\n")
            log("")
            log(report)
            log("")

    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            "TRUNCATE webhook_deliveries, orders, order_lines, customers, customer_stats, fulfillments, "
            "fulfillment_events, tier_changes, tombstones"
        )
        conn.execute("VACUUM (ANALYZE)")
    enqueue(url, shop_id, work)
    try:
        from pyinstrument import Profiler
    except ImportError:
        log(
            "pyinstrument is not installed (.venv/bin/pip install pyinstrument): "
            "skipping the wall-clock profile"
        )
        return
    log("pyinstrument (wall clock, async-aware) on the same deliveries in-process ...")
    profiler = Profiler(interval=0.001, async_mode="enabled")
    profiler.start()
    asyncio.run(drain_in_process(url))
    profiler.stop()
    text = profiler.output_text(unicode=False, color=False, show_all=False, timeline=False)
    (RESULTS / "worker_pyinstrument.txt").write_text(text)
    (RESULTS / "worker_pyinstrument.html").write_text(profiler.output_html())
    log(text[:12000])
    log(f"full profiles in {RESULTS} (worker_pyinstrument.html, worker_pyspy.txt)")


if __name__ == "__main__":
    main()
