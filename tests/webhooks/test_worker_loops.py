"""Several batches in flight in one worker process (``TIERLINE_WORKER_CONCURRENCY``, PostgreSQL):
the same figures, tracking and tier history as one batch at a time, every delivery settled once;
SQLite always applies one batch at a time."""

from __future__ import annotations

from typing import Any

import pytest

from service.config import Settings
from tests.conftest import make_settings
from tests.support import deliveries as helpers
from tests.support.deliveries import Sessionmaker
from tests.support.marks import first_in_fast_runs
from tests.support.payloads import OTHER_SHOP, SHOP
from tests.webhooks.test_batched import mixed_storm, state

pytestmark = pytest.mark.anyio


def as_sets(found: dict[str, Any]) -> dict[str, Any]:
    """The state with the history as a sorted list: two loops insert rows in another order."""
    return found | {"history": sorted(found["history"], key=repr)}


@pytest.mark.parametrize("seed", first_in_fast_runs(11, 12, 13))
async def test_two_loops_reach_what_one_loop_reaches(
    sessionmaker: Sessionmaker, settings: Settings, database_url: str, seed: int
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer: its worker applies one batch at a time")
    deliveries = mixed_storm(seed) + mixed_storm(seed + 100)
    one = make_settings(database_url, TIERLINE_WORKER_BATCH=5, TIERLINE_WORKER_CONCURRENCY=1)
    two = make_settings(database_url, TIERLINE_WORKER_BATCH=5, TIERLINE_WORKER_CONCURRENCY=2)

    await helpers.enqueue_many(sessionmaker, deliveries, shop=SHOP)
    assert await helpers.make_worker(sessionmaker, one).drain() == len(deliveries)
    await helpers.enqueue_many(sessionmaker, deliveries, shop=OTHER_SHOP)
    worker = helpers.make_worker(sessionmaker, two)
    assert worker.loops == 2
    assert await worker.drain() == len(deliveries)

    assert as_sets(await state(sessionmaker, OTHER_SHOP)) == as_sets(await state(sessionmaker, SHOP))
    statuses = [d["status"] for d in await helpers.deliveries(sessionmaker, shop=OTHER_SHOP)]
    assert len(statuses) == len(deliveries)
    assert set(statuses) == {"processed"}


async def test_sqlite_applies_one_batch_at_a_time(sessionmaker: Sessionmaker, database_url: str) -> None:
    settings = make_settings(database_url, TIERLINE_WORKER_CONCURRENCY=4)
    expected = 1 if settings.is_sqlite else 4
    assert helpers.make_worker(sessionmaker, settings).loops == expected


def test_one_batch_at_a_time_unless_configured() -> None:
    assert Settings.model_fields["worker_concurrency"].default == 1
