"""A backfill in real ``tierline worker`` processes, SIGKILLed twice, against the stand-in Shopify.

The first kill comes while Shopify is still running the customers bulk operation: the next
worker (once the lease has expired) polls that operation again instead of starting another. The
second comes while the orders are being applied: the next worker resumes after the last committed
batch. The figures must equal those of an uninterrupted backfill of the same shop data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.config import Settings
from service.db import session_scope
from service.jobs import JobRunner
from service.models import JobState, ShopJob
from tests.conftest import make_settings
from tests.service.test_lifecycle import first_load, no_pool
from tests.service.test_sync import shop_state
from tests.support import deliveries as helpers
from tests.support import twins
from tests.support.deliveries import Sessionmaker
from tests.support.payloads import API_KEY, API_SECRET, ENCRYPTION_KEY
from tests.support.shopify_standin import Server, StandIn, schema_available, shopify_url

if not schema_available():  # test_lifecycle says why, loudly
    pytest.skip("the Admin API schema is missing (see test_lifecycle)", allow_module_level=True)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

KILLED = "killed-shop.myshopify.com"
CALM = "calm-shop.myshopify.com"
JOBS = ShopJob.__table__  # type: ignore[attr-defined]
TIERLINE = [sys.executable, "-m", "service.cli"]


@pytest.fixture
def standin() -> Iterator[StandIn]:
    fake = StandIn(api_key=API_KEY, api_secret=API_SECRET)
    with Server(fake) as running:
        yield running
    assert fake.invalid_documents == [], fake.invalid_documents


def worker_env(database_url: str, standin: StandIn) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "SHOPIFY_API_KEY": API_KEY,
            "SHOPIFY_API_SECRET": API_SECRET,
            "TIERLINE_ENCRYPTION_KEY": ENCRYPTION_KEY,
            "TIERLINE_ENV": "development",
            "TIERLINE_SHOPIFY_URL": shopify_url(standin),
            "TIERLINE_WORKER_POLL": "0.1",
            "TIERLINE_BULK_POLL": "0.1",
            "TIERLINE_JOB_LEASE": "2",
            "TIERLINE_JOB_CONCURRENCY": "1",
            "TIERLINE_LOG_FORMAT": "json",
        }
    )
    return env


def start_worker(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*TIERLINE, "worker"], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    for line in proc.stderr:
        if "jobs.started" in line or time.monotonic() > deadline:
            break
    return proc


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


async def wait_for(condition: Any, what: str, seconds: float = 90) -> Any:
    import asyncio

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = await condition()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def sync_state(sessionmaker: Sessionmaker, shop: str) -> dict[str, Any]:
    async with session_scope(sessionmaker, readonly=True) as session:
        state = await session.scalar(
            sa.select(helpers.SHOPS.c.sync_state).where(helpers.SHOPS.c.domain == shop)
        )
    return dict(state or {})


async def job_state(sessionmaker: Sessionmaker) -> str | None:
    async with session_scope(sessionmaker, readonly=True) as session:
        return await session.scalar(sa.select(JOBS.c.state).order_by(JOBS.c.id.desc()).limit(1))


async def test_a_worker_killed_during_a_backfill_finishes_it_after_restart_with_the_same_figures(
    database_url: str, standin: StandIn, sessionmaker: Sessionmaker, tmp_path: Path
) -> None:
    data = twins.dataset(customers=60, orders=250, seed=21, max_lines=3)
    standin.add_shop(KILLED, data)
    standin.add_shop(CALM, data)
    settings: Settings = make_settings(database_url, TIERLINE_SHOPIFY_URL=shopify_url(standin))
    async with (
        no_pool() as http,
        AsyncTestClient(
            app=create_app(settings, http_client=http), base_url="http://testserver.local"
        ) as client,
    ):
        assert (await first_load(client, standin, KILLED)).status_code == 200
    env = worker_env(database_url, standin)

    # Kill 1: Shopify is running the customers bulk operation.
    standin.hold_bulk.set()
    worker = start_worker(env, tmp_path)
    try:

        async def operation_stored() -> bool:
            return bool((await sync_state(sessionmaker, KILLED)).get("bulkOperationId"))

        await wait_for(operation_stored, "the customers bulk operation")
        kill(worker)
        standin.hold_bulk.clear()

        # Kill 2: while the orders are applied (if this machine is quick enough to catch it).
        worker = start_worker(env, tmp_path)

        async def applying_orders() -> bool:
            state = await sync_state(sessionmaker, KILLED)
            return (
                state.get("phase") == "orders" and int(state.get("applied") or 0) > 0
            ) or "lastRun" in state

        await wait_for(applying_orders, "orders being applied")
        if "lastRun" not in await sync_state(sessionmaker, KILLED):
            kill(worker)
            worker = start_worker(env, tmp_path)

        async def finished() -> bool:
            return await job_state(sessionmaker) == JobState.DONE

        await wait_for(finished, "the backfill to finish", seconds=180)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)

    assert standin.bulk_operations_started(KILLED) == ["customers", "orders"]  # never started twice

    # The same shop data, backfilled without interruption.
    async with (
        no_pool() as http,
        AsyncTestClient(
            app=create_app(settings, http_client=http), base_url="http://testserver.local"
        ) as client,
    ):
        assert (await first_load(client, standin, CALM)).status_code == 200
    async with httpx.AsyncClient(timeout=10) as http:
        [outcome] = await JobRunner(sessionmaker, http, settings).drain()
    assert outcome.state == "done", outcome.error
    killed, calm = await shop_state(sessionmaker, KILLED), await shop_state(sessionmaker, CALM)
    assert len(killed["orders"]) == 250
    assert killed == calm
