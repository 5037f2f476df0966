"""Seed the benchmark database: one shop, N customers, M orders with line items, customer stats.

    .venv/bin/python bench/seed.py [--customers 100000] [--orders 1000000] [--lines-share 1.0] [--force]

The database (``BENCH_DATABASE_URL``, default postgresql://127.0.0.1:5432/tierline_bench) is
created, migrated with ``service.migrate.upgrade`` and filled with psycopg ``COPY``. A seeded
database of the same size and schema is reused (its marker is the database comment); ``--force``
drops and seeds again. ``customer_stats`` is then computed by the project's own
``stats.refresh_shop`` (timed).

Shape of the data (deterministic for a seed): customers sign up over the first 80 % of two years;
8 % never order; the others buy with Pareto-distributed weights (repeat buyers: a few customers
place dozens of orders); 2 % of orders are guest checkouts (no customer). Orders: ~40 % COD;
1-3 line items (55/30/15 %); ~9 % of COD and ~1 % of prepaid orders are RTO (tagged ``rto``,
half of the COD RTOs cancelled); 6 % cancelled otherwise (prepaid ones refunded to zero); 2 %
zero totals (exchanges), 4 % partially refunded; 1 % test orders; tracking statuses by age
(recent orders not shipped or in transit, older ones mostly delivered).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from psycopg import sql

from bench.common import (
    BENCH_SHOP,
    CATALOGUE,
    CITIES,
    FIRST_NAMES,
    LAST_NAMES,
    bench_url,
    create_database,
    database_name,
    exit_cleanly_on_sigterm,
    libpq_url,
    log,
    migrate,
    settings_for,
    shop_id_for,
    with_database,
)
from service.domain.tier_levels import BASE_TIER, DEFAULT_TIER_THRESHOLDS, TIERS

START = datetime(2024, 11, 1, tzinfo=UTC).timestamp()
END = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
SPAN = END - START
DAY = 86_400.0

CUSTOMER_BASE = 6_000_000_000_000
ORDER_BASE = 5_500_000_000_000
LINE_BASE = 14_000_000_000_000

NON_BUYER_SHARE = 0.08
GUEST_SHARE = 0.02
COD_SHARE = 0.40
RTO_SHARE_COD = 0.09
RTO_SHARE_PREPAID = 0.01
CANCEL_SHARE = 0.06
ZERO_TOTAL_SHARE = 0.02
PARTIAL_REFUND_SHARE = 0.04
TEST_SHARE = 0.01
CHUNK_ORDERS = 20_000

ORDER_COLUMNS = (
    "shop_id",
    "id",
    "name",
    "customer_id",
    "email",
    "phone",
    "created_at",
    "updated_at",
    "processed_at",
    "cancelled_at",
    "financial_status",
    "fulfillment_status",
    "currency",
    "total_amount",
    "original_total",
    "payment_method",
    "payment_gateway_names",
    "gateway_key",
    "tracking_status",
    "delivered_at",
    "rto_source",
    "tags",
    "rto_tag_since",
    "rto_tag_absent_at",
    "rto_tag_log",
    "manual_status",
    "manual_status_at",
    "manual_rto_status",
    "manual_rto_at",
    "test",
    "shipping_address",
    "billing_address",
)
LINE_COLUMNS = (
    "shop_id",
    "order_id",
    "id",
    "product_id",
    "variant_id",
    "title",
    "variant_title",
    "vendor",
    "sku",
    "quantity",
    "price",
)
CUSTOMER_COLUMNS = (
    "shop_id",
    "id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "state",
    "default_address",
    "addresses",
    "created_at",
    "updated_at",
    "version_rank",
    "version_at",
)
NULL = "\\N"


def iso(ts: float) -> str:
    """A UTC timestamp for COPY text format."""
    t = time.gmtime(ts)
    return f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d} {t[3]:02d}:{t[4]:02d}:{t[5]:02d}+00"


def log_time(ts: float) -> str:
    """The order tag log's time format (service.domain.tracking.log_time)."""
    t = time.gmtime(ts)
    return f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}T{t[3]:02d}:{t[4]:02d}:{t[5]:02d}.000000Z"


def table_columns(conn: psycopg.Connection, table: str) -> set[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = %s",
        (table,),
    ).fetchall()
    return {str(r[0]) for r in rows}


def rupees(paise: int) -> str:
    return f"{paise // 100}.{paise % 100:02d}"


def schema_fingerprint() -> str:
    """Tables, columns and indexes of the models: a database seeded with another schema is redone."""
    from sqlmodel import SQLModel

    import service.models  # noqa: F401  (registers the tables)

    tables = SQLModel.metadata.sorted_tables
    columns = sorted((t.name, c.name, str(c.type)) for t in tables for c in t.columns)
    indexes = sorted(
        (t.name, str(i.name), tuple(str(e) for e in i.expressions)) for t in tables for i in t.indexes
    )
    return hashlib.sha1(repr((columns, indexes)).encode(), usedforsecurity=False).hexdigest()[:12]


def marker_for(args: argparse.Namespace) -> str:
    return (
        f"tierline-bench seed v1 customers={args.customers} orders={args.orders} "
        f"lines_share={args.lines_share} seed={args.seed} schema={schema_fingerprint()}"
    )


def current_marker(url: str) -> str | None:
    with psycopg.connect(libpq_url(with_database(url, "postgres")), autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (database_name(url),),
        ).fetchone()
    return None if row is None else row[0]


class Progress:
    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.started = time.perf_counter()

    def __call__(self, done: int) -> None:
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        log(f"  {self.label}: {done:,}/{self.total:,}  {elapsed:6.1f} s  ({rate:,.0f}/s)")


def generate_customers(
    rng: random.Random, count: int
) -> tuple[list[int], list[float], list[str], list[str], list[str]]:
    """Customer ids, sign-up times, and per customer the email, phone and order-address JSON."""
    ids: list[int] = []
    created: list[float] = []
    emails: list[str] = []
    phones: list[str] = []
    addresses: list[str] = []
    for i in range(count):
        cid = CUSTOMER_BASE + i * 3 + rng.randint(0, 2)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        city, province, code, pin = rng.choice(CITIES)
        phone = f"+91{rng.choice('6789')}{rng.randint(0, 999_999_999):09d}"
        ids.append(cid)
        created.append(START + rng.random() * 0.8 * SPAN)
        emails.append(f"{first}.{last}.{i}@example.com".lower())
        phones.append(phone)
        addresses.append(
            json.dumps(
                {
                    "first_name": first,
                    "last_name": last,
                    "name": f"{first} {last}",
                    "address1": f"{rng.randint(1, 220)} MG Road",
                    "address2": None,
                    "city": city,
                    "province": province,
                    "province_code": code,
                    "country": "India",
                    "country_code": "IN",
                    "zip": f"{pin}{rng.randint(1, 99):02d}",
                    "phone": phone,
                    "company": None,
                },
                separators=(",", ":"),
            )
        )
    return ids, created, emails, phones, addresses


def copy_customers(
    conn: psycopg.Connection,
    shop_id: int,
    ids: list[int],
    created: list[float],
    emails: list[str],
    phones: list[str],
    addresses: list[str],
) -> None:
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in CUSTOMER_COLUMNS)
    stmt = sql.SQL("COPY customers ({}) FROM STDIN").format(columns)
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        buffer: list[str] = []
        for i, cid in enumerate(ids):
            address = json.loads(addresses[i])
            default = json.dumps(
                address | {"id": cid + 1, "customer_id": cid, "default": True}, separators=(",", ":")
            )
            at = iso(created[i])
            first, last = address["first_name"], address["last_name"]
            state = ("disabled", "enabled", "invited")[i % 3]
            buffer.append(
                f"{shop_id}\t{cid}\t{emails[i]}\t{phones[i]}\t{first}\t{last}\t{state}\t{default}\t[{default}]\t"
                f"{at}\t{at}\t1\t{at}\n"
            )
            if len(buffer) >= 20_000:
                copy.write("".join(buffer))
                buffer.clear()
        copy.write("".join(buffer))


def tracking_for(rng: random.Random, age_days: float) -> str | None:
    """A forward tracking status plausible for an order of this age."""
    roll = rng.random()
    if age_days < 2:
        return None if roll < 0.6 else ("label_printed" if roll < 0.8 else "confirmed")
    if age_days < 10:
        if roll < 0.10:
            return None
        if roll < 0.50:
            return "in_transit"
        if roll < 0.60:
            return "out_for_delivery"
        return "delivered"
    if roll < 0.95:
        return "delivered"
    if roll < 0.96:
        return "failure"
    if roll < 0.97:
        return "attempted_delivery"
    if roll < 0.98:
        return "in_transit"
    return None


def copy_orders(
    rng: random.Random,
    order_conn: psycopg.Connection,
    line_conn: psycopg.Connection,
    shop_id: int,
    customers: tuple[list[int], list[float], list[str], list[str], list[str]],
    order_count: int,
    lines_share: float,
    progress: Callable[[int], None],
) -> tuple[int, dict[str, int]]:
    """COPY orders and their lines (two connections, so both backends work at once)."""
    ids, signed_up, emails, _phones, addresses = customers
    weights = [0.0 if rng.random() < NON_BUYER_SHARE else min(rng.paretovariate(1.2), 50.0) for _ in ids]
    cumulative = list(itertools.accumulate(weights))
    buyers = rng.choices(range(len(ids)), cum_weights=cumulative, k=order_count)
    placed: list[tuple[float, int]] = []
    for index in buyers:
        if rng.random() < GUEST_SHARE:
            placed.append((START + rng.random() * SPAN, -1))
        else:
            first = signed_up[index] + 600
            placed.append((first + rng.random() * (END - DAY - first), index))
    placed.sort()
    log(f"  {order_count:,} orders placed over {len(set(buyers)):,} buyers; writing ...")

    counts = {"cod": 0, "cancelled": 0, "test": 0, "rto": 0, "zero_total": 0, "lines": 0, "guest": 0}
    # The schema moves on: write the columns the table has (its other columns take their defaults).
    existing = table_columns(order_conn, "orders")
    present = [i for i, c in enumerate(ORDER_COLUMNS) if c in existing]
    skipped = [c for c in ORDER_COLUMNS if c not in existing]
    if skipped:
        log(f"  (orders has no column {', '.join(skipped)}: not written)")
    order_stmt = sql.SQL("COPY orders ({}) FROM STDIN").format(
        sql.SQL(", ").join(sql.Identifier(ORDER_COLUMNS[i]) for i in present)
    )
    line_stmt = sql.SQL("COPY order_lines ({}) FROM STDIN").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in LINE_COLUMNS)
    )
    catalogue = [
        (p, v, t, vt if vt is not None else NULL, vendor, sku, price)
        for p, v, t, vt, vendor, sku, _g, price in CATALOGUE
    ]
    line_id = LINE_BASE
    with (
        order_conn.cursor() as order_cur,
        order_cur.copy(order_stmt) as order_copy,
        line_conn.cursor() as line_cur,
        line_cur.copy(line_stmt) as line_copy,
    ):
        order_rows: list[str] = []
        line_rows: list[str] = []
        for n, (created, index) in enumerate(placed):
            order_id = ORDER_BASE + n * 2
            # Line items and the original total.
            k = 1 if (roll := rng.random()) < 0.55 else (2 if roll < 0.85 else 3)
            line_total = 0
            write_lines = lines_share >= 1.0 or rng.random() < lines_share
            for _ in range(k):
                product_id, variant_id, title, variant_title, vendor, sku, price = rng.choice(catalogue)
                quantity = 1 if (q := rng.random()) < 0.85 else (2 if q < 0.97 else 3)
                line_total += price * quantity
                line_id += 1
                if write_lines:
                    line_rows.append(
                        f"{shop_id}\t{order_id}\t{line_id}\t{product_id}\t{variant_id}\t{title}\t{variant_title}\t"
                        f"{vendor}\t{sku}\t{quantity}\t{rupees(price)}\n"
                    )
                    counts["lines"] += 1
            original = line_total + (0 if line_total >= 99_900 else 7_900)
            total = original
            cod = rng.random() < COD_SHARE
            counts["cod"] += cod
            gateway = (
                "Cash on Delivery (COD)"
                if cod
                else ("shopify_payments" if rng.random() < 0.55 else "razorpay")
            )
            tags = [t for t, share in (("gift", 0.05), ("instagram", 0.08)) if rng.random() < share]
            if cod and rng.random() < 0.3:
                tags.insert(0, "cod-verified")
            age_days = (END - created) / DAY
            cancelled_at: float | None = None
            delivered_at: float | None = None
            rto_since: float | None = None
            rto_absent: float | None = None
            rto_source = NULL
            updated = created
            financial = "pending" if cod else "paid"
            if age_days > 12 and rng.random() < (RTO_SHARE_COD if cod else RTO_SHARE_PREPAID):
                roll = rng.random()
                tracking: str | None = (
                    "rto_delivered" if roll < 0.6 else ("rto_in_transit" if roll < 0.85 else "rto_initiated")
                )
                tags.append("rto")
                rto_source = "tag"
                rto_absent = created
                rto_since = updated = created + rng.uniform(4, 10) * DAY
                counts["rto"] += 1
                if cod and rng.random() < 0.5:
                    cancelled_at = updated = rto_since + rng.uniform(1, 2) * DAY
                    financial = "voided"
            elif rng.random() < CANCEL_SHARE:
                tracking = None
                cancelled_at = updated = created + rng.uniform(0.05, 2) * DAY
                if cod:
                    financial = "voided"
                else:
                    financial, total = "refunded", 0
            else:
                tracking = tracking_for(rng, age_days)
                if tracking == "delivered":
                    delivered_at = updated = min(created + rng.uniform(2, 7) * DAY, END - 60)
                    financial = "paid"
                elif tracking is not None:
                    updated = created + min(age_days, 2.0) * DAY * 0.5
                roll = rng.random()
                if roll < ZERO_TOTAL_SHARE:
                    total = 0
                elif roll < ZERO_TOTAL_SHARE + PARTIAL_REFUND_SHARE and total > 20_000:
                    total -= 10_000
                    financial = "partially_refunded"
            counts["cancelled"] += cancelled_at is not None
            counts["zero_total"] += total == 0
            test = rng.random() < TEST_SHARE
            counts["test"] += test
            if index >= 0:
                customer_id, email, address = str(ids[index]), emails[index], addresses[index]
            else:
                counts["guest"] += 1
                customer_id, email, address = NULL, f"guest{n}@example.com", addresses[n % len(addresses)]
            tag_text = ", ".join(tags)
            if rto_since is not None:
                untagged = ", ".join(t for t in tags if t != "rto")
                tag_log = f'[["{log_time(created)}","{untagged}"],["{log_time(rto_since)}","{tag_text}"]]'
            else:
                tag_log = f'[["{log_time(created)}","{tag_text}"]]'
            values = (
                str(shop_id),
                str(order_id),
                f"#{1001 + n}",
                customer_id,
                email,
                NULL,
                iso(created),
                iso(updated),
                iso(created),
                iso(cancelled_at) if cancelled_at else NULL,
                financial,
                "fulfilled" if tracking else NULL,
                "INR",
                rupees(total),
                rupees(original),
                "cod" if cod else "prepaid",
                f'["{gateway}"]',
                f"|{gateway.lower()}|",
                tracking or NULL,
                iso(delivered_at) if delivered_at else NULL,
                rto_source,
                tag_text,
                iso(rto_since) if rto_since else NULL,
                iso(rto_absent) if rto_absent else NULL,
                tag_log,
                NULL,
                NULL,
                NULL,
                NULL,
                "t" if test else "f",
                address,
                address,
            )
            order_rows.append("\t".join([values[i] for i in present]) + "\n")
            if len(order_rows) >= CHUNK_ORDERS:
                order_copy.write("".join(order_rows))
                line_copy.write("".join(line_rows))
                order_rows.clear()
                line_rows.clear()
                if (n + 1) % 100_000 == 0:
                    progress(n + 1)
        order_copy.write("".join(order_rows))
        line_copy.write("".join(line_rows))
    if order_count % 100_000:
        progress(order_count)
    return counts["lines"], counts


async def refresh_stats(url: str, shop_id: int, total: int) -> float:
    """``stats.refresh_shop`` in one transaction, as ``tierline`` runs it; returns seconds."""
    from service.db import make_engine, make_sessionmaker, session_scope
    from service.domain import stats
    from service.domain.settings import get_shop_settings

    engine = make_engine(settings_for(url))
    last = [0.0]

    def progress(done: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 2 or done >= total:
            last[0] = now
            log(f"  refresh_shop: {done:,}/{total:,} customers")

    try:
        started = time.perf_counter()
        async with session_scope(make_sessionmaker(engine)) as session:
            settings = await get_shop_settings(session, shop_id)
            await stats.refresh_shop(session, shop_id, settings, progress=progress)
        return time.perf_counter() - started
    finally:
        await engine.dispose()


def describe(url: str, shop_id: int) -> None:
    """Print what the database holds (figures about the shape of the data)."""
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute(
            """
            SELECT count(*), count(*) FILTER (WHERE payment_method = 'cod'),
                   count(*) FILTER (WHERE cancelled_at IS NOT NULL), count(*) FILTER (WHERE test),
                   count(*) FILTER (WHERE tracking_status LIKE 'rto%%'),
                   count(*) FILTER (WHERE total_amount = 0),
                   count(*) FILTER (WHERE customer_id IS NULL)
            FROM orders WHERE shop_id = %s
            """,
            (shop_id,),
        ).fetchone()
        assert row is not None
        total = max(1, int(row[0]))
        log(
            f"  orders {row[0]:,}: COD {row[1] / total:.1%}, cancelled {row[2] / total:.1%}, "
            f"test {row[3] / total:.1%}, "
            f"RTO {row[4] / total:.1%}, zero total {row[5] / total:.1%}, guest {row[6] / total:.1%}"
        )
        lines = conn.execute("SELECT count(*) FROM order_lines WHERE shop_id = %s", (shop_id,)).fetchone()
        log(f"  order lines {lines[0] if lines else 0:,}")
        dist = conn.execute(
            """
            SELECT count(*) FILTER (WHERE order_count = 0), count(*) FILTER (WHERE order_count = 1),
                   count(*) FILTER (WHERE order_count BETWEEN 2 AND 9),
                   count(*) FILTER (WHERE order_count >= 10), max(order_count),
                   count(*) FILTER (WHERE rto_count > 0), count(*)
            FROM customer_stats WHERE shop_id = %s
            """,
            (shop_id,),
        ).fetchone()
        when = sql.SQL(" ").join(
            sql.SQL("WHEN ltv >= {} THEN {}").format(sql.Literal(amount), sql.Literal(tier))
            for tier, amount in DEFAULT_TIER_THRESHOLDS.items()
        )
        tiers = conn.execute(
            sql.SQL(
                "SELECT tier, count(*) FROM (SELECT CASE {} ELSE {} END AS tier FROM customer_stats "
                "WHERE shop_id = %s) AS live GROUP BY tier"
            ).format(when, sql.Literal(BASE_TIER)),
            (shop_id,),
        ).fetchall()
        assert dist is not None
        log(
            f"  customers {dist[6]:,}: no orders {dist[0]:,}, one {dist[1]:,}, 2-9 {dist[2]:,}, "
            f"10+ {dist[3]:,} "
            f"(max {dist[4]}); with a COD RTO {dist[5]:,}"
        )
        counts = dict.fromkeys(TIERS, 0) | {tier: int(n) for tier, n in tiers}
        log("  live tiers (default thresholds): " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument(
        "--lines-share",
        type=float,
        default=1.0,
        help="share of orders whose line items are written (default all)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--force", action="store_true", help="drop and seed again even if the database matches"
    )
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    url = bench_url()
    marker = marker_for(args)
    log(f"bench seed: {database_name(url)} ({args.customers:,} customers, {args.orders:,} orders)")
    if not args.force and current_marker(url) == marker:
        shop_id = shop_id_for(url)
        log(f"already seeded with the same size and schema ({marker}); reusing it (--force to seed again)")
        describe(url, shop_id)
        return

    started = time.perf_counter()
    create_database(url, drop=True)
    log(f"created database {database_name(url)}; migrating ...")
    revision = migrate(url)
    log(f"  at revision {revision}")
    shop_id = shop_id_for(url, BENCH_SHOP)
    rng = random.Random(args.seed)

    step = time.perf_counter()
    customers = generate_customers(rng, args.customers)
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute("SET synchronous_commit = off")
        copy_customers(conn, shop_id, *customers)
    log(f"customers: {args.customers:,} copied in {time.perf_counter() - step:.1f} s")

    step = time.perf_counter()
    with psycopg.connect(libpq_url(url)) as order_conn, psycopg.connect(libpq_url(url)) as line_conn:
        order_conn.execute("SET synchronous_commit = off")
        line_conn.execute("SET synchronous_commit = off")
        line_count, counts = copy_orders(
            rng,
            order_conn,
            line_conn,
            shop_id,
            customers,
            args.orders,
            args.lines_share,
            Progress("orders", args.orders),
        )
    log(
        f"orders: {args.orders:,} and {line_count:,} lines copied in {time.perf_counter() - step:.1f} s "
        f"(COD {counts['cod']:,}, cancelled {counts['cancelled']:,}, RTO {counts['rto']:,}, "
        f"test {counts['test']:,}, "
        f"zero total {counts['zero_total']:,}, guest {counts['guest']:,})"
    )

    step = time.perf_counter()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        # Every customer has a stats row from customers/create (stats.ensure_rows), orders or not.
        conn.execute(
            "INSERT INTO customer_stats (shop_id, customer_id, ltv, order_count, rto_count) "
            "SELECT shop_id, id, 0, 0, 0 FROM customers WHERE shop_id = %s ON CONFLICT DO NOTHING",
            (shop_id,),
        )
        conn.execute("ANALYZE")
    log(f"customer_stats rows created and tables analyzed in {time.perf_counter() - step:.1f} s")

    log("computing customer_stats with stats.refresh_shop ...")
    seconds = asyncio.run(refresh_stats(url, shop_id, args.customers))
    log(
        f"stats.refresh_shop: {args.customers:,} customers in {seconds:.2f} s "
        "(one transaction, commit included)"
    )

    step = time.perf_counter()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(database_name(url)), sql.Literal(marker)
            )
        )
    log(f"VACUUM ANALYZE in {time.perf_counter() - step:.1f} s")
    describe(url, shop_id)
    log(f"seeded in {time.perf_counter() - started:.1f} s; refresh_shop {seconds:.2f} s")


if __name__ == "__main__":
    main()
