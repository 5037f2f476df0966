"""Issue 4: customer stats reads and the batch tier recalculation on the seeded database.

    .venv/bin/python bench/stats_bench.py [--calls 200] [--ids 250]

1. ``stats.read`` (the function every read uses) for ``--ids`` random customer ids, ``--calls``
   times, each in a fresh ``AsyncSession`` from ``service.db`` (as an API request: pool checkout
   with pre-ping, BEGIN, the SELECT, building ``Stats``), and again inside one open session;
2. the same SELECT that ``stats.read`` sends, through psycopg directly (driver floor);
3. a hand-written aggregate over ``orders`` (the eligibility rules of docs/domain.md) for the same ids,
   through psycopg;
4. a correctness check: the figures of (1) and (3) compared for a sample of customers;
5. ``tiers.recalculate`` over every customer after resetting ``tier_of_record`` to NULL.

Run ``bench/seed.py`` first. Prints progress and a markdown table; asserts no timing.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from bench.common import (
    BENCH_SHOP,
    RTO_STATES,
    CpuMeter,
    Latency,
    background_note,
    bench_url,
    database_name,
    exit_cleanly_on_sigterm,
    libpq_url,
    log,
    machine_summary,
    markdown_table,
    ms,
    postgres_version,
    ratio,
    settings_for,
)
from service.db import make_engine, make_sessionmaker, session_scope
from service.domain import stats, tiers
from service.domain.settings import ShopSettings, get_shop_settings

WARMUP = 20
CHECK_BATCHES = 20


def hand_sql(settings: ShopSettings) -> str:
    """LTV, orderCount and rtoCount written by hand from docs/domain.md (NULL-safe RTO test)."""
    not_test = "" if settings.include_test_orders else " AND NOT o.test"
    eligible = (
        "o.cancelled_at IS NULL" + not_test + " AND o.total_amount > 0"
        " AND (o.tracking_status IS NULL OR o.tracking_status <> ALL(%(rto)s))"
    )
    return (
        "SELECT o.customer_id,"  # noqa: S608 -- built from constants only
        f" COALESCE(SUM(o.total_amount) FILTER (WHERE {eligible}), 0) AS ltv,"
        f" COUNT(*) FILTER (WHERE {eligible}) AS order_count,"
        " COUNT(*) FILTER (WHERE o.payment_method = 'cod' AND o.tracking_status = ANY(%(rto)s)"
        f"{not_test}) AS rto_count"
        " FROM orders o WHERE o.shop_id = %(shop)s AND o.customer_id = ANY(%(ids)s)"
        " GROUP BY o.customer_id"
    )


def stats_read_sql(count: int) -> str:
    """What ``stats.read`` sends (an IN list of bind parameters, as SQLAlchemy expands it)."""
    placeholders = ", ".join(["%s"] * count)
    return (
        "SELECT customer_id, ltv, order_count, rto_count FROM customer_stats"  # noqa: S608 -- placeholders only
        f" WHERE shop_id = %s AND customer_id IN ({placeholders})"
    )


Figures = dict[int, tuple[Decimal, int, int, str]]


@dataclass(slots=True)
class Timing:
    """Per-call wall time and this thread's CPU time; PostgreSQL CPU per call over the loop."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    postgres_per_call: float = 0.0

    @property
    def latency(self) -> Latency:
        return Latency.of(self.wall)

    @property
    def cpu_per_call(self) -> float:
        return sum(self.cpu) / len(self.cpu) if self.cpu else 0.0

    def describe(self) -> str:
        return (
            f"{self.latency.describe()}; CPU per call: Python {ms(self.cpu_per_call)} ms, "
            f"PostgreSQL {ms(self.postgres_per_call)} ms"
        )


class Clock:
    """Context manager adding one call's wall and thread CPU time to a Timing (after warm-up)."""

    def __init__(self, timing: Timing, counted: bool) -> None:
        self.timing = timing
        self.counted = counted

    def __enter__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.thread_time()

    def __exit__(self, *_exc: object) -> None:
        wall, cpu = time.perf_counter() - self.wall, time.thread_time() - self.cpu
        if self.counted:
            self.timing.wall.append(wall)
            self.timing.cpu.append(cpu)


async def time_stats_read(
    url: str, shop_id: int, settings: ShopSettings, batches: list[list[int]]
) -> tuple[Timing, Timing, Figures]:
    """stats.read per fresh session and within one session; returns the figures of the check sample."""
    engine = make_engine(settings_for(url))
    sessionmaker = make_sessionmaker(engine)
    fresh, reused = Timing(), Timing()
    figures: Figures = {}
    try:
        with CpuMeter(url) as meter:
            for index, ids in enumerate(batches):
                async with sessionmaker() as session:
                    with Clock(fresh, index >= WARMUP):
                        await stats.read(session, shop_id, ids, settings)
        fresh.postgres_per_call = meter.stop().postgres / len(batches)
        log(f"  stats.read, fresh session per call: {fresh.describe()}")
        with CpuMeter(url) as meter:
            async with sessionmaker() as session:
                for index, ids in enumerate(batches):
                    with Clock(reused, index >= WARMUP):
                        await stats.read(session, shop_id, ids, settings)
        reused.postgres_per_call = meter.stop().postgres / len(batches)
        log(f"  stats.read, one open session:       {reused.describe()}")
        sample = sorted({cid for ids in batches[WARMUP : WARMUP + CHECK_BATCHES] for cid in ids})
        async with sessionmaker() as session:
            for cid, found in (await stats.read(session, shop_id, sample, settings)).items():
                figures[cid] = (found.ltv, found.order_count, found.rto_count, found.tier)
    finally:
        await engine.dispose()
    return fresh, reused, figures


def time_psycopg(
    url: str, shop_id: int, settings: ShopSettings, batches: list[list[int]]
) -> tuple[Timing, Timing, Figures]:
    """The stats.read SELECT and the hand-written aggregate through psycopg; figures of the sample."""
    own, hand = Timing(), Timing()
    figures: Figures = {}
    query = hand_sql(settings)
    rto = list(RTO_STATES)
    with psycopg.connect(libpq_url(url)) as conn:
        with CpuMeter(url) as meter:
            for index, ids in enumerate(batches):
                with Clock(own, index >= WARMUP):
                    conn.execute(stats_read_sql(len(ids)), (shop_id, *ids)).fetchall()
                conn.rollback()
        own.postgres_per_call = meter.stop().postgres / len(batches)
        log(f"  stats.read's SELECT via psycopg:    {own.describe()}")
        with CpuMeter(url) as meter:
            for index, ids in enumerate(batches):
                with Clock(hand, index >= WARMUP):
                    conn.execute(query, {"shop": shop_id, "ids": ids, "rto": rto}).fetchall()
                conn.rollback()
        hand.postgres_per_call = meter.stop().postgres / len(batches)
        log(f"  hand-written aggregate over orders: {hand.describe()}")
        sample = sorted({cid for ids in batches[WARMUP : WARMUP + CHECK_BATCHES] for cid in ids})
        rows = conn.execute(query, {"shop": shop_id, "ids": sample, "rto": rto}).fetchall()
        by_id = {int(r[0]): (Decimal(r[1]), int(r[2]), int(r[3])) for r in rows}
        for cid in sample:
            ltv, order_count, rto_count = by_id.get(cid, (Decimal(0), 0, 0))
            figures[cid] = (ltv, order_count, rto_count, tiers.tier_for(ltv, settings.tier_thresholds))
        conn.rollback()
    return own, hand, figures


def compare(served: Figures, recomputed: Figures) -> tuple[int, int]:
    differences = [
        (cid, served.get(cid), recomputed[cid])
        for cid in sorted(recomputed)
        if served.get(cid) != recomputed[cid]
    ]
    for cid, have, want in differences[:10]:
        log(f"  DIFFERENCE customer {cid}: stats.read {have} vs hand-written SQL {want}")
    return len(recomputed) - len(differences), len(recomputed)


async def recalculate(
    url: str, shop_id: int, settings: ShopSettings
) -> tuple[tiers.Recalculation, float, float]:
    """``tiers.recalculate`` in one transaction; seconds before and after the commit."""
    engine = make_engine(settings_for(url))
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 1:
            last[0] = now
            log(f"  recalculate: {done:,}/{total:,}")

    try:
        started = time.perf_counter()
        async with session_scope(make_sessionmaker(engine)) as session:
            result = await tiers.recalculate(
                session,
                shop_id,
                tiers.Rules(settings.tier_thresholds, settings.include_test_orders),
                reason="batch",
                progress=progress,
            )
            work = time.perf_counter() - started
        return result, work, time.perf_counter() - started
    finally:
        await engine.dispose()


async def load_settings(url: str, shop_id: int) -> ShopSettings:
    engine = make_engine(settings_for(url))
    try:
        async with make_sessionmaker(engine)() as session:
            return await get_shop_settings(session, shop_id)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--ids", type=int, default=250, help="customer ids per call")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--wait-quiet", type=float, default=0.0, help="wait up to N s for an idle machine")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    url = bench_url()
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("SELECT id FROM shops WHERE domain = %s", (BENCH_SHOP,)).fetchone()
        if row is None:
            raise SystemExit(f"{database_name(url)} is not seeded: run bench/seed.py first")
        shop_id = int(row[0])
        all_ids = [
            int(r[0])
            for r in conn.execute("SELECT customer_id FROM customer_stats WHERE shop_id = %s", (shop_id,))
        ]
        orders = conn.execute("SELECT count(*) FROM orders WHERE shop_id = %s", (shop_id,)).fetchone()
    settings = asyncio.run(load_settings(url, shop_id))
    log(
        f"stats bench on {database_name(url)}: {len(all_ids):,} customers, "
        f"{orders[0] if orders else 0:,} orders"
    )
    rng = random.Random(args.seed)
    batches = [rng.sample(all_ids, args.ids) for _ in range(WARMUP + args.calls)]
    log(f"machine: {machine_summary()}; PostgreSQL {postgres_version(url)}")
    log(background_note(args.wait_quiet))
    log(f"{args.calls} calls of {args.ids} random customer ids each (after {WARMUP} warm-up calls):")

    fresh, reused, served = asyncio.run(time_stats_read(url, shop_id, settings, batches))
    own, hand, recomputed = time_psycopg(url, shop_id, settings, batches)

    same, checked = compare(served, recomputed)
    log(
        f"correctness: stats.read and the hand-written aggregate agree for {same:,}/{checked:,} customers "
        f"(ltv, orderCount, rtoCount, tier)"
    )

    log("tier recalculation: resetting tier_of_record to NULL ...")
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("UPDATE customer_stats SET tier_of_record = NULL WHERE shop_id = %s", (shop_id,))
        conn.execute("DELETE FROM tier_changes WHERE shop_id = %s", (shop_id,))
        conn.execute("VACUUM (ANALYZE) customer_stats, tier_changes")
    result, work, total_seconds = asyncio.run(recalculate(url, shop_id, settings))
    log(
        f"tiers.recalculate: total {result.total:,}, updated {result.updated:,} in {work:.2f} s "
        f"({total_seconds:.2f} s with the commit)"
    )
    again, again_work, again_total = asyncio.run(recalculate(url, shop_id, settings))
    log(f"tiers.recalculate again (nothing to change): updated {again.updated:,} in {again_total:.2f} s")
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) customer_stats, tier_changes")

    measures = [
        ("stats.read, fresh AsyncSession per call", fresh),
        ("stats.read, one open session", reused),
        ("stats.read's SELECT via psycopg", own),
        ("hand-written aggregate over orders (psycopg)", hand),
    ]
    rows: list[list[object]] = [
        [
            label,
            ms(t.latency.p50),
            ms(t.latency.p99),
            ms(t.latency.mean),
            ms(t.cpu_per_call),
            ms(t.postgres_per_call),
            ratio(t.latency.p50, hand.latency.p50),
        ]
        for label, t in measures
    ]
    log("")
    log(f"### Stats for {args.ids} random customers ({args.calls} calls)")
    log("")
    log(
        markdown_table(
            [
                "measure",
                "p50 ms",
                "p99 ms",
                "mean ms",
                "Python CPU ms",
                "PostgreSQL CPU ms",
                "p50 vs hand SQL",
            ],
            rows,
        )
    )
    log("")
    log(
        "stats.read (fresh session) vs its own SELECT via psycopg: "
        f"{ratio(fresh.latency.p50, own.latency.p50)} at p50"
    )
    log(f"correctness sample: {same:,}/{checked:,} customers identical")
    log("")
    log("### Tier recalculation")
    log("")
    log(
        markdown_table(
            ["run", "total", "updated", "seconds (work)", "seconds (with commit)", "goal"],
            [
                [
                    "tier_of_record reset to NULL",
                    f"{result.total:,}",
                    f"{result.updated:,}",
                    f"{work:.2f}",
                    f"{total_seconds:.2f}",
                    "< 5 s",
                ],
                [
                    "second run, nothing changes",
                    f"{again.total:,}",
                    f"{again.updated:,}",
                    f"{again_work:.2f}",
                    f"{again_total:.2f}",
                    "",
                ],
            ],
        )
    )


if __name__ == "__main__":
    main()
