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
import cProfile
import pstats
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
    PROJECT_CODE,
    REPO,
    RESULTS,
    Secrets,
    background_note,
    bench_url,
    children_cpu_seconds,
    create_database,
    database_name,
    exit_cleanly_on_sigterm,
    libpq_url,
    log,
    markdown_table,
    migrate,
    production_env,
    py_spy_path,
    settings_for,
    shop_id_for,
    short_frame,
    summarize_pyspy,
    with_database,
)
from bench.intake_bench import Delivery, enqueue, order_deliveries


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


def summarize_cprofile(profile: cProfile.Profile, top: int = 20) -> str:
    """Own and inclusive CPU shares (thread CPU time) from a cProfile run, as markdown."""
    stats = pstats.Stats(profile)
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _cc, _nc, tt, _ct, _callers in entries.values()) or 1.0

    def name(key: tuple[str, int, str]) -> str:
        path, _line, func = key
        return short_frame(f"{func} ({path})")

    own = sorted(((tt, name(k)) for k, (_cc, _nc, tt, _ct, _c) in entries.items()), reverse=True)
    inclusive = sorted(((ct, name(k)) for k, (_cc, _nc, _tt, ct, _c) in entries.items()), reverse=True)
    project = [(ct, n) for ct, n in inclusive if any(p in n for p in PROJECT_CODE) and ct < 0.9 * total]
    libraries = [
        (ct, n)
        for ct, n in inclusive
        if not any(p in n for p in PROJECT_CODE) and ct < 0.9 * total and "<module>" not in n
    ]
    return "\n".join(
        [
            f"cProfile (timer: thread CPU time): {total:.1f} s of CPU in the profiled drain, "
            "profiler overhead included (it inflates call-heavy code). Shares are of that CPU time.",
            "",
            markdown_table(
                ["function (own CPU)", "own %"], [[n, f"{100 * t / total:.1f}"] for t, n in own[:top]]
            ),
            "",
            markdown_table(
                ["project function (inclusive CPU)", "incl. %"],
                [[n, f"{100 * t / total:.1f}"] for t, n in project[:top]],
            ),
            "",
            markdown_table(
                ["library function (inclusive CPU)", "incl. %"],
                [[n, f"{100 * t / total:.1f}"] for t, n in libraries[:top]],
            ),
        ]
    )


def reset(url: str, shop_id: int, work: list[Delivery]) -> None:
    """Empty the tables the worker writes and put the same deliveries back in the inbox."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            "TRUNCATE webhook_deliveries, orders, order_lines, customers, customer_stats, fulfillments, "
            "fulfillment_events, tier_changes, tombstones"
        )
        conn.execute("VACUUM (ANALYZE)")
    enqueue(url, shop_id, work)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--fulfilled", type=int, default=200)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--wait-quiet", type=float, default=0.0, help="wait up to N s for an idle machine")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    # Import the worker's code now: a broken work tree fails here, not in the middle of a profile.
    import webhooks.handlers  # noqa: F401

    url = with_database(bench_url(), "tierline_bench_profile")
    create_database(url, drop=True)
    log(f"fresh database {database_name(url)}, migrated to {migrate(url)}")
    shop_id = shop_id_for(url)
    env = production_env(url, Secrets.random())
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = order_deliveries(
        random.Random(11),
        args.orders,
        customers=max(1, args.orders * 3 // 10),
        fulfilled=args.fulfilled,
    )
    enqueue(url, shop_id, work)
    log(
        f"enqueued {len(work):,} deliveries "
        "(orders/create with 3 lines, fulfillments/create, fulfillment_events/create)"
    )
    log(background_note(args.wait_quiet))

    # 1. py-spy on the real command.
    py_spy = py_spy_path()
    if py_spy is None:
        log("py-spy is not installed (.venv/bin/pip install py-spy): skipping the sampled profile")
    else:
        raw = RESULTS / "worker_pyspy.txt"
        command = [py_spy, "record", "--format", "raw", "--rate", str(args.rate), "--output", str(raw)]
        command += ["--nonblocking", "--", str(BIN / "tierline"), "worker", "--drain"]
        before = children_cpu_seconds()
        started = time.perf_counter()
        completed = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        wall = time.perf_counter() - started
        cpu = children_cpu_seconds() - before
        if completed.returncode != 0 or not raw.exists():
            log(f"py-spy failed ({completed.returncode}): {completed.stderr[-2000:]}")
        else:
            log(
                f"  py-spy run: {len(work):,} deliveries in {wall:.2f} s "
                f"({len(work) / wall:,.0f}/s with py-spy attached); worker and py-spy used {cpu:.1f} s of CPU"
            )
            report = summarize_pyspy(raw, args.rate, wall)
            (RESULTS / "worker_pyspy_summary.md").write_text(report + "\n")
            log("")
            log(report)
            log("")
            log(
                "  (py-spy samples a runnable process that waits for a CPU as busy: on a loaded machine the "
                "frame that just woke PostgreSQL, _send_query_prepared, collects those samples.)"
            )

    # 2. cProfile with a CPU-time timer: immune to waiting (for PostgreSQL or for a CPU).
    reset(url, shop_id, work)
    log("cProfile (thread CPU time) on the same deliveries, in-process ...")
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    asyncio.run(drain_in_process(url))
    profile.disable()
    profile.dump_stats(str(RESULTS / "worker_cprofile.pstats"))
    report = summarize_cprofile(profile)
    (RESULTS / "worker_cprofile_summary.md").write_text(report + "\n")
    log("")
    log(report)
    log("")

    # 3. pyinstrument: wall clock, async-aware (attributes waiting to the code that awaits).
    try:
        from pyinstrument import Profiler
    except ImportError:
        log(
            "pyinstrument is not installed (.venv/bin/pip install pyinstrument): "
            "skipping the wall-clock profile"
        )
        return
    reset(url, shop_id, work)
    log("pyinstrument (wall clock, async-aware) on the same deliveries, in-process ...")
    profiler = Profiler(interval=0.001, async_mode="enabled")
    profiler.start()
    asyncio.run(drain_in_process(url))
    profiler.stop()
    text = profiler.output_text(unicode=False, color=False, show_all=False, timeline=False)
    (RESULTS / "worker_pyinstrument.txt").write_text(text)
    (RESULTS / "worker_pyinstrument.html").write_text(profiler.output_html())
    log(text[:12000])
    log(f"profiles in {RESULTS}: worker_pyspy*.txt/md, worker_cprofile*, worker_pyinstrument.txt/html")


if __name__ == "__main__":
    main()
