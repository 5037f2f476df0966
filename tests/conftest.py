"""Fixtures: every database test runs on SQLite and, when it answers, on PostgreSQL (docs/operations.md).

* SQLite: the schema is migrated once into a template file, copied for each test to the same path
  in this test process (so the URL, and the app built for it, stay the same).
* PostgreSQL: one database per test process, migrated once, truncated after each test.
  ``TEST_DATABASE_URL`` (default ``postgresql://127.0.0.1:5432/test``) names the server. When it
  does not answer, PostgreSQL cases are skipped, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.app import create_app
from service.config import Settings
from service.db import make_engine, make_sessionmaker
from service.migrate import upgrade
from tests.support.payloads import API_KEY, API_SECRET, ENCRYPTION_KEY

DEFAULT_PG_URL = "postgresql://127.0.0.1:5432/test"
TABLES_TO_KEEP = {"alembic_version"}

#: Modules that start real processes (servers, workers, the CLI, a browser, containers), kill
#: them, wait on timeouts, or search exhaustively (hypothesis, every permutation, fuzzing, the
#: merchant's whole story): marked ``slow``; ``make test-fast`` leaves them out.
SLOW_MODULES = frozenset(
    {
        "test_cli_process",
        "test_client_limits",
        "test_fifth_tier",
        "test_hostile",
        "test_lifecycle",
        "test_permutations",
        "test_stats_property",
        "test_image",
        "test_fly",
        "test_lifecycle_processes",
        "test_migrations_rolling",
        "test_openapi_schemathesis",
        "test_outage",
        "test_serve_process",
        "test_ui_browser",
        "test_worker_processes",
        "test_writeback_processes",
    }
)
#: ``TIERLINE_TEST_DATABASES``: the databases the database tests run on (default both).
DATABASES_ENV = "TIERLINE_TEST_DATABASES"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the slow modules, and leave out the database kinds ``TIERLINE_TEST_DATABASES`` omits."""
    wanted = {d.strip() for d in os.environ.get(DATABASES_ENV, "sqlite,postgresql").split(",") if d.strip()}
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        params = getattr(getattr(item, "callspec", None), "params", {})
        kinds = {params[name] for name in ("database_url", "fresh_url") if name in params}
        (dropped if kinds - wanted else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _pg_admin_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "DATABASE_URL": database_url,
        "SHOPIFY_API_KEY": API_KEY,
        "SHOPIFY_API_SECRET": API_SECRET,
        "TIERLINE_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "TIERLINE_WORKER": "off",
        "TIERLINE_ENV": "development",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    asyncio.run(upgrade(make_settings(f"sqlite+aiosqlite:///{path}")))
    return path


@pytest.fixture(scope="session")
def postgres_database(request: pytest.FixtureRequest, worker_id: str) -> Iterator[str | None]:
    """A migrated PostgreSQL database for this test process, or None when the server is absent."""
    admin = _pg_admin_url()
    name = f"tierline_test_{_run_id(request)}_{worker_id}".replace("-", "_")
    try:
        with psycopg.connect(_libpq(admin), autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {admin} is unreachable under CI=true: {exc}")
        yield None
        return
    url = (
        make_url(admin)
        .set(drivername="postgresql+psycopg", database=name)
        .render_as_string(hide_password=False)
    )
    asyncio.run(upgrade(make_settings(url)))
    yield url
    with psycopg.connect(_libpq(admin), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_LOCAL_RUN_ID = uuid.uuid4().hex[:8]


def _run_id(request: pytest.FixtureRequest) -> str:
    """Distinct per pytest run, shared by its xdist workers: parallel runs never collide."""
    workerinput = getattr(request.config, "workerinput", None)
    if workerinput is not None:
        return str(workerinput["testrunuid"])[:8]
    return _LOCAL_RUN_ID


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    """The xdist worker name ("master" without xdist)."""
    return str(getattr(request.config, "workerinput", {}).get("workerid", "master"))


def _truncate(url: str) -> None:
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
            if r[0] not in TABLES_TO_KEEP
        ]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")


@pytest.fixture(scope="session")
def sqlite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this test process's SQLite database lives: one path, a fresh copy for every test."""
    return tmp_path_factory.mktemp("sqlite") / "tierline.db"


def _fresh_sqlite(template: Path, path: Path) -> None:
    """A new file (a new inode: a connection a test leaked keeps the old one) with the template."""
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    shutil.copyfile(template, path)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, sqlite_path: Path, sqlite_template: Path) -> Iterator[str]:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        _fresh_sqlite(sqlite_template, sqlite_path)
        yield f"sqlite+aiosqlite:///{sqlite_path}"
        return
    pg_url: str | None = request.getfixturevalue("postgres_database")
    if pg_url is None:
        pytest.skip("PostgreSQL is not reachable at TEST_DATABASE_URL (set CI=true to make this fail)")
    # Emptied before as well as after: a test starts empty even if something of the previous
    # one (a process it started, a task it left) wrote after that test's own truncation.
    _truncate(pg_url)
    try:
        yield pg_url
    finally:
        _truncate(pg_url)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(settings)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


def _no_network(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError(f"tests do not reach {request.url.host}", request=request)


#: The app's HTTP client in tests that share an app (below): it lives as long as the test process.
_SHARED_OFFLINE_HTTP = httpx.AsyncClient(transport=httpx.MockTransport(_no_network))
_APPS: dict[str, Litestar] = {}


def shared_app(settings: Settings) -> Litestar:
    """The app for these settings, built once per test process. Building Litestar's routes costs
    about 60 ms; everything with state (engine, runtime, worker, intake) is made by the lifespan,
    which every test's client starts afresh. Tests that fake Shopify build their own app."""
    key = settings.model_dump_json()
    app = _APPS.get(key)
    if app is None:
        app = _APPS[key] = create_app(settings, http_client=_SHARED_OFFLINE_HTTP)
    return app


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return shared_app(settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as test_client:
        yield test_client
