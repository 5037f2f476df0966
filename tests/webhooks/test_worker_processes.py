"""Worker processes against a real database: killed mid-batch, stopped, and run side by side.

These start ``tierline worker`` as real subprocesses (docs/architecture.md: "killing a worker at any instant
loses nothing and applies nothing twice"; docs/operations.md: several workers against one PostgreSQL).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.deliveries import DELIVERIES, ORDER_LINES, ORDERS, Delivery, enqueue_many
from tests.support.payloads import API_KEY, API_SECRET, ENCRYPTION_KEY, line_item, next_id, order_payload

pytestmark = pytest.mark.anyio

TIERLINE = [sys.executable, "-m", "service.cli"]
#: ``make soak`` raises these: more kills over more deliveries.
SOAK_ROUNDS = int(os.environ.get("TIERLINE_SOAK_ROUNDS", "3"))
SOAK_DELIVERIES = int(os.environ.get("TIERLINE_SOAK_DELIVERIES", "600"))


def worker_env(database_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "SHOPIFY_API_KEY": API_KEY,
            "SHOPIFY_API_SECRET": API_SECRET,
            "TIERLINE_ENCRYPTION_KEY": ENCRYPTION_KEY,
            "TIERLINE_ENV": "production",
            "SHOPIFY_APP_URL": "https://tierline.example.com",
            "TIERLINE_WORKER_POLL": "0.2",
            **extra,
        }
    )
    return env


def order_deliveries(count: int) -> tuple[list[Delivery], int]:
    """Orders with three line items each (and a customer); returns them and the line count."""
    deliveries = []
    for _ in range(count):
        order_id = next_id()
        lines = [line_item(order_id * 10 + k, price="100.00") for k in range(3)]
        payload = order_payload(order_id, customer_id=next_id(), total="300.00", lines=lines)
        deliveries.append(Delivery.of("orders/create", payload))
    return deliveries, count * 3


async def counts(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessionmaker() as session:
        result = {}
        for name, stmt in {
            "orders": sa.select(sa.func.count()).select_from(ORDERS),
            "lines": sa.select(sa.func.count()).select_from(ORDER_LINES),
            "processed": sa.select(sa.func.count()).where(DELIVERIES.c.status == "processed"),
            "retried": sa.select(sa.func.count()).where(DELIVERIES.c.attempts > 0),
            "not_processed": sa.select(sa.func.count()).where(DELIVERIES.c.status != "processed"),
        }.items():
            result[name] = int(await session.scalar(stmt) or 0)
        return result


def start_worker(database_url: str, cwd: Path) -> subprocess.Popen[str]:
    """A ``tierline worker`` that has started (its signal handlers are installed)."""
    proc = subprocess.Popen(
        [*TIERLINE, "worker"],
        env=worker_env(database_url),
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    for line in proc.stderr:  # JSON log lines: wait for the worker's own start event
        if "worker.started" in line or time.monotonic() > deadline:
            break
    return proc


def drain(database_url: str, cwd: Path) -> int:
    done = subprocess.run(
        [*TIERLINE, "worker", "--drain"],
        env=worker_env(database_url),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    for line in done.stderr.splitlines():
        if line.startswith("applied "):
            return int(line.split()[1])
    raise AssertionError(f"no 'applied N' line in: {done.stderr[-500:]}")


class TestKilledWorker:
    async def test_sigkill_at_random_points_loses_nothing_and_applies_nothing_twice(
        self, database_url: str, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        deliveries, lines = order_deliveries(SOAK_DELIVERIES)
        await enqueue_many(sessionmaker, deliveries)
        rng = random.Random(7)
        kills = 0
        for _ in range(SOAK_ROUNDS):
            proc = subprocess.Popen(
                [*TIERLINE, "worker"],
                env=worker_env(database_url),
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(1.0, 2.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(timeout=10)
        assert kills >= 1
        drain(database_url, tmp_path)
        after = await counts(sessionmaker)
        assert after == {
            "orders": SOAK_DELIVERIES,
            "lines": lines,
            "processed": SOAK_DELIVERIES,
            "retried": 0,  # a killed batch rolls back whole: nothing half-applied, nothing retried
            "not_processed": 0,
        }


class TestStoppedWorker:
    async def test_sigterm_finishes_the_batch_and_exits_promptly(
        self, database_url: str, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        deliveries, _ = order_deliveries(400)
        await enqueue_many(sessionmaker, deliveries)
        proc = start_worker(database_url, tmp_path)
        time.sleep(0.5)  # let it get into its batches
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=15)
        assert proc.returncode == 0, rest[-2000:]
        assert time.monotonic() - started < 10
        assert "worker.stopped" in rest
        # Whatever was applied was applied whole: every processed delivery has its order and lines.
        after = await counts(sessionmaker)
        assert after["orders"] == after["processed"]
        assert after["lines"] == 3 * after["orders"]
        assert after["retried"] == 0

    async def test_idle_worker_exits_within_ten_seconds(self, database_url: str, tmp_path: Path) -> None:
        proc = start_worker(database_url, tmp_path)
        time.sleep(1.0)  # idle: waiting for work
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=12)
        assert proc.returncode == 0, rest[-2000:]
        assert time.monotonic() - started < 10


class TestSeveralWorkers:
    async def test_two_workers_apply_5000_deliveries_exactly_once(
        self, database_url: str, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        if not database_url.startswith("postgresql"):
            pytest.skip("several workers share one PostgreSQL (SQLite has a single writer)")
        deliveries, lines = order_deliveries(5000)
        await enqueue_many(sessionmaker, deliveries)
        procs = [
            subprocess.Popen(
                [*TIERLINE, "worker", "--drain"],
                env=worker_env(database_url),
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        applied = []
        for proc in procs:
            _, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, stderr[-2000:]
            applied.append(next(int(x.split()[1]) for x in stderr.splitlines() if x.startswith("applied ")))
        assert sum(applied) == 5000  # a delivery claimed by both workers would count twice
        assert min(applied) > 0  # both took part
        after = await counts(sessionmaker)
        assert after == {"orders": 5000, "lines": lines, "processed": 5000, "retried": 0, "not_processed": 0}
