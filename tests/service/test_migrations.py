"""``service.migrate.upgrade`` on fresh SQLite and PostgreSQL databases.

Each test gets an empty database of its own (not the migrated test databases of conftest): a
SQLite file in ``tmp_path``, or a uniquely named PostgreSQL database dropped afterwards.
The migrated schema is compared with the models by Alembic's autogenerate comparison, with
type and server-default comparison on, and nothing ignored. One limit of the tools: on SQLite,
SQLAlchemy cannot reflect expression-based indexes (such as ``ix_customers_shop_name``), so
Alembic skips them there with a warning (silenced below); PostgreSQL compares them, and on both
databases every index the models declare must exist by name.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

import service.models  # noqa: F401  (registers every table on SQLModel.metadata)
from service.db import make_engine, make_sessionmaker, session_scope
from service.domain.shops import get_or_create_shop_id
from service.migrate import alembic_config, upgrade
from tests.conftest import DEFAULT_PG_URL, make_settings

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings(
        "ignore:Skipped unsupported reflection of expression-based index:sqlalchemy.exc.SAWarning",
        "ignore:autogenerate skipping metadata-specified expression-based index:UserWarning",
    ),
]


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database that no other test uses."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    admin = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL)
    name = f"tierline_migrations_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(_libpq(admin), autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {admin} is unreachable under CI=true: {exc}")
        pytest.skip("PostgreSQL is not reachable at TEST_DATABASE_URL (set CI=true to make this fail)")
    try:
        yield (
            make_url(admin)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(_libpq(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def fresh_engine(fresh_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(make_settings(fresh_url))
    yield engine
    await engine.dispose()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _schema(connection: Connection) -> dict[str, Any]:
    """Tables with their columns, indexes, unique constraints and foreign keys."""
    inspector = sa.inspect(connection)
    return {
        table: {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            "indexes": sorted(
                (i["name"] or "", tuple(i["column_names"])) for i in inspector.get_indexes(table)
            ),
            "unique": sorted(u["name"] or "" for u in inspector.get_unique_constraints(table)),
            "foreign_keys": sorted(f["name"] or "" for f in inspector.get_foreign_keys(table)),
        }
        for table in sorted(inspector.get_table_names())
    }


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, SQLModel.metadata))


def _index_names(connection: Connection) -> set[str]:
    if connection.dialect.name == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'index'"
    else:
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    return {str(name) for name in connection.execute(sa.text(sql)).scalars()}


async def schema_of(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as connection:
        return await connection.run_sync(_schema)


class TestUpgrade:
    async def test_fresh_database_reaches_head(self, fresh_url: str, fresh_engine: AsyncEngine) -> None:
        revision = await upgrade(make_settings(fresh_url))

        assert revision == head_revision()
        async with fresh_engine.connect() as connection:
            stored = (
                (await connection.execute(sa.text("SELECT version_num FROM alembic_version"))).scalars().all()
            )
        assert list(stored) == [head_revision()]
        assert set(SQLModel.metadata.tables) <= set(await schema_of(fresh_engine))

    async def test_second_run_is_a_no_op(self, fresh_url: str, fresh_engine: AsyncEngine) -> None:
        settings = make_settings(fresh_url)
        await upgrade(settings)
        before = await schema_of(fresh_engine)
        async with session_scope(make_sessionmaker(fresh_engine)) as session:
            await get_or_create_shop_id(session, "kept.myshopify.com")

        revision = await upgrade(settings)

        assert revision == head_revision()
        assert await schema_of(fresh_engine) == before
        async with fresh_engine.connect() as connection:
            domains = (await connection.execute(sa.text("SELECT domain FROM shops"))).scalars().all()
            versions = (
                (await connection.execute(sa.text("SELECT version_num FROM alembic_version"))).scalars().all()
            )
        assert list(domains) == ["kept.myshopify.com"]
        assert list(versions) == [head_revision()]


class TestSchemaMatchesModels:
    async def test_migrated_schema_has_no_differences_from_the_models(
        self, fresh_url: str, fresh_engine: AsyncEngine
    ) -> None:
        await upgrade(make_settings(fresh_url))

        async with fresh_engine.connect() as connection:
            differences = await connection.run_sync(_differences)

        assert differences == []

    async def test_comparison_detects_a_missing_column(
        self, fresh_url: str, fresh_engine: AsyncEngine
    ) -> None:
        """The check above can fail: drop a column the models declare and it is reported."""
        await upgrade(make_settings(fresh_url))
        async with fresh_engine.begin() as connection:
            await connection.execute(sa.text("ALTER TABLE webhook_deliveries DROP COLUMN last_error"))

        async with fresh_engine.connect() as connection:
            differences = await connection.run_sync(_differences)

        assert any(
            diff[0] == "add_column" and diff[2] == "webhook_deliveries" and diff[3].name == "last_error"
            for diff in differences
            if isinstance(diff, tuple)
        ), differences

    async def test_every_declared_index_exists(self, fresh_url: str, fresh_engine: AsyncEngine) -> None:
        await upgrade(make_settings(fresh_url))
        declared = {str(index.name) for table in SQLModel.metadata.tables.values() for index in table.indexes}
        assert declared, "the models declare no index"

        async with fresh_engine.connect() as connection:
            existing = await connection.run_sync(_index_names)

        assert declared - existing == set()


class TestRevisions:
    def test_the_head_and_known_revisions_are_the_ones_alembic_reads(self) -> None:
        from alembic.script import ScriptDirectory

        from service.migrate import _revisions, alembic_config

        scripts = ScriptDirectory.from_config(alembic_config())
        head, known = _revisions()
        assert head == scripts.get_current_head()
        assert known == {r.revision for r in scripts.walk_revisions()}
        assert len(known) >= 5
