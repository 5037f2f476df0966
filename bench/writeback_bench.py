"""Issue 17: write back 10,000 customers against the stand-in Shopify, against the cost bucket's ideal.

Seeds one installed shop in a fresh PostgreSQL database (``tierline_bench_writeback`` on the
``BENCH_DATABASE_URL`` server) with N customers whose figures spread over the four tiers, queues
the write-back of every customer (what turning write-back on does), and lets the real sender
(``service.writeback.WriteBackSender``) send everything to the stand-in Shopify
(``tests/support/shopify_standin.py``: real HTTP on 127.0.0.1, every document validated against
the Admin API schema in ``../shared``, a leaky cost bucket per shop).

The ideal is what the bucket allows: (total requested cost - the bucket's size) / restore rate
seconds; the ratio is the measured time over it (1.0 = every second spent waiting on the bucket).
A measurement, not a test: it prints figures and never asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    bench_url,
    create_database,
    log,
    machine_summary,
    markdown_table,
    migrate,
    with_database,
)

SHOP = "bench-writeback.myshopify.com"


async def run(url: str, customers: int, bucket: float, restore_rate: float, batch: int) -> None:
    import sqlalchemy as sa

    from service.config import Settings
    from service.crypto import TokenCipher
    from service.db import make_engine, make_sessionmaker, session_scope
    from service.domain import installs, writeback
    from service.domain.shops import get_or_create_shop_id
    from service.models import CustomerStats
    from service.types import utc_now
    from service.writeback import WriteBackSender
    from shopify_client import AccessToken
    from tests.support.shopify_standin import Server, StandIn, admin_schema, schema_available, shopify_url

    if not schema_available():
        raise SystemExit("the Admin API schema is missing (../shared/shopify-admin-schema)")
    admin_schema()
    secret = "bench-writeback-secret-0123456789abcdef"  # noqa: S105 - a stand-in secret
    standin = StandIn(api_key="bench-key", api_secret=secret)
    shop = standin.add_shop(SHOP)
    standin.bucket_size, standin.restore_rate = bucket, restore_rate
    ids = [8_000_000_000_000 + n for n in range(customers)]
    shop.customers = [{"id": f"gid://shopify/Customer/{cid}"} for cid in ids]
    with Server(standin):
        settings = Settings.model_validate(
            {
                "DATABASE_URL": url,
                "SHOPIFY_API_KEY": "bench-key",
                "SHOPIFY_API_SECRET": secret,
                "TIERLINE_ENCRYPTION_KEY": "bench-writeback-encryption-key-0123456789",
                "TIERLINE_SHOPIFY_URL": shopify_url(standin),
            }
        )
        engine = make_engine(settings)
        sessionmaker = make_sessionmaker(engine)
        issued = standin._issue(SHOP)
        token = AccessToken(
            access_token=issued["access_token"],
            scope=issued["scope"],
            expires_at=utc_now() + timedelta(hours=1),
            refresh_token=issued["refresh_token"],
            refresh_token_expires_at=utc_now() + timedelta(days=90),
        )
        stats = CustomerStats.__table__  # type: ignore[attr-defined]
        async with session_scope(sessionmaker) as session:
            shop_id = await get_or_create_shop_id(session, SHOP)
            await installs.store_token(session, shop_id, token, TokenCipher(settings.tierline_encryption_key))
            await session.execute(
                sa.insert(stats),
                [
                    {
                        "shop_id": shop_id,
                        "customer_id": cid,
                        "ltv": Decimal((n * 7919) % 60000),
                        "order_count": n % 9 + 1,
                        "rto_count": n % 3,
                    }
                    for n, cid in enumerate(ids)
                ],
            )
        started = time.perf_counter()
        async with session_scope(sessionmaker) as session:
            queued = await writeback.queue_shop(session, shop_id)
        queue_seconds = time.perf_counter() - started
        log(f"queued {queued} customers in {queue_seconds:.2f} s; sending …")
        async with httpx.AsyncClient(timeout=30) as http:
            sender = WriteBackSender(sessionmaker, http, settings, batch=batch)
            started = time.perf_counter()
            report = await sender.drain()
            elapsed = time.perf_counter() - started
        async with session_scope(sessionmaker) as session:
            summary = await writeback.summary(session, shop_id)
        await engine.dispose()
    spent = sum(standin.costs)
    ideal = max(0.0, (spent - bucket) / restore_rate)
    tagged = sum(1 for cid in ids if shop.tags.get(f"gid://shopify/Customer/{cid}"))
    print(machine_summary())
    print(
        markdown_table(
            [
                "customers",
                "sent",
                "pending/failed",
                "requests",
                "requested cost",
                "bucket",
                "restore/s",
                "ideal s",
                "measured s",
                "ratio",
                "throttle waits",
                "THROTTLED answers",
            ],
            [
                [
                    customers,
                    report.sent,
                    f"{summary.pending}/{summary.failed}",
                    len(standin.costs),
                    f"{spent:,.0f}",
                    f"{bucket:g}",
                    f"{restore_rate:g}",
                    f"{ideal:.1f}",
                    f"{elapsed:.1f}",
                    f"{elapsed / ideal:.2f}" if ideal else "n/a",
                    report.throttle_waits,
                    standin.throttled,
                ]
            ],
        )
    )
    if tagged != customers:
        print(f"WARNING: {customers - tagged} customers carry no tier tag at the stand-in")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--bucket", type=float, default=2000.0, help="stand-in bucket size (points)")
    parser.add_argument("--restore-rate", type=float, default=1000.0, help="points/s (Plus: 1000)")
    parser.add_argument("--batch", type=int, default=25, help="rows per sender round")
    args = parser.parse_args()
    url = with_database(bench_url(), "tierline_bench_writeback")
    create_database(url, drop=True)
    migrate(url)
    asyncio.run(run(url, args.customers, args.bucket, args.restore_rate, args.batch))


if __name__ == "__main__":
    main()
