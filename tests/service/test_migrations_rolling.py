"""Migrations leave the previous release working during a rolling deploy (docs/operations.md).

``release_queries.json.gz`` holds the SQL the release in production executes (recorded by
``make release-queries`` at the revision it names). Each test database is migrated to that
revision, filled by the previous release (phase one), migrated to head with that data in it, as
the release command does while old machines keep running, and then the previous release's
traffic runs again on the new schema (phase two). Any migration added since, the newest
included, that drops, renames or retypes what the previous release uses, or adds a column it
cannot fill, fails here. PostgreSQL only: rolling deploys run on PostgreSQL (SQLite serves one
process).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from service.migrate import alembic_config, upgrade
from tests.conftest import DEFAULT_PG_URL
from tests.service import release_queries
from tests.service.release_queries import libpq, replay, settings_for

EXPAND_THEN_CONTRACT = (
    "the previous release's SQL fails on the migrated schema. During a rolling deploy its machines "
    "keep running after `tierline migrate`: expand now (add, keep what it uses), contract in a "
    "later release (docs/operations.md, 'Migrations during a rolling deploy')"
)


@pytest.fixture(scope="module")
def recording() -> dict[str, Any]:
    return release_queries.load()


@contextmanager
def fresh_database() -> Iterator[str]:
    """An empty PostgreSQL database of its own."""
    admin = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL)
    name = f"tierline_rolling_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(libpq(admin), autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {admin} is unreachable under CI=true: {exc}")
        pytest.skip("PostgreSQL is not reachable at TEST_DATABASE_URL (set CI=true to make this fail)")
    try:
        url = make_url(admin).set(drivername="postgresql+psycopg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    with fresh_database() as url:
        yield url


def migrate(url: str, revision: str = "head") -> None:
    asyncio.run(upgrade(settings_for(url), revision))


def execute(url: str, sql: str) -> None:
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute(sql.encode())


class TestRecording:
    def test_is_at_a_revision_head_descends_from(self, recording: dict[str, Any]) -> None:
        script = ScriptDirectory.from_config(alembic_config())
        head = script.get_current_head()
        assert head is not None
        ancestry = {revision.revision for revision in script.iterate_revisions(head, "base")}
        assert recording["revision"] in ancestry, (
            f"recorded at {recording['revision']}, not in the history of {head}: re-record "
            "with `make release-queries` at the revision in production"
        )

    def test_covers_intake_worker_and_reads_in_both_phases(self, recording: dict[str, Any]) -> None:
        phases = recording["phases"]
        assert [phase["shop"] for phase in phases] == list(release_queries.PHASE_SHOPS)
        for phase in phases:
            statements = " ".join(phase["statements"])
            for table in ("webhook_deliveries", "orders", "order_lines", "customers", "customer_stats"):
                assert f"INSERT INTO {table}" in statements
            assert "FOR UPDATE SKIP LOCKED" in statements  # the worker's claim
            assert {event[0] for event in phase["events"]} >= {"execute", "executemany", "commit"}


class TestRollingDeploy:
    def test_previous_release_keeps_working_across_every_newer_migration(
        self, fresh_pg: str, recording: dict[str, Any]
    ) -> None:
        before, after = recording["phases"]
        migrate(fresh_pg, recording["revision"])
        assert replay(fresh_pg, before) is None

        migrate(fresh_pg)  # the release command, with the previous release's data in place

        failure = replay(fresh_pg, after)
        assert failure is None, f"{EXPAND_THEN_CONTRACT}\n{failure}"

    @pytest.mark.parametrize(
        ("contracting_change", "sqlstate"),
        [
            ("ALTER TABLE orders RENAME COLUMN total_amount TO current_total", "42703"),  # undefined column
            ("ALTER TABLE customers ADD COLUMN segment text NOT NULL", "23502"),  # not-null violation
            ("DROP TABLE customer_stats CASCADE", "42P01"),  # undefined table
        ],
    )
    def test_a_migration_that_contracts_too_early_is_caught(
        self, fresh_pg: str, recording: dict[str, Any], contracting_change: str, sqlstate: str
    ) -> None:
        """The replay can fail: a change the previous release cannot live with is reported."""
        migrate(fresh_pg)
        execute(fresh_pg, contracting_change)

        failure = replay(fresh_pg, recording["phases"][0])

        assert failure is not None
        assert failure.sqlstate == sqlstate, str(failure)


class TestRecorder:
    def test_records_what_the_current_code_executes_and_replays_it(self, tmp_path: Path) -> None:
        """`make release-queries` keeps working as the code changes: record one phase, replay it."""
        with fresh_database() as source, fresh_database() as target:
            shop = release_queries.PHASE_SHOPS[1]
            recording = asyncio.run(release_queries.record(source, shops=(shop,)))
            path = tmp_path / "recording.json.gz"
            release_queries.save(recording, path)
            [phase] = release_queries.load(path)["phases"]
            assert len(phase["events"]) > 100
            migrate(target)
            assert replay(target, phase) is None
