"""The ``tierline`` command (docs/operations.md): migrate, api-key create, replay, production secret checks.

These tests run on SQLite only (a fresh file per test): the commands are thin wrappers around
domain functions that the API and inbox tests exercise on both databases. One ``migrate`` test
also runs against the PostgreSQL test database when it is reachable.

The commands call ``asyncio.run`` themselves, so every test here is synchronous.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import sqlite3
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient
from typer.testing import CliRunner, Result

from service.app import create_app
from service.cli import app
from service.db import make_engine, make_sessionmaker, session_scope
from service.domain import inbox
from service.domain.shops import get_or_create_shop_id
from tests.conftest import make_settings
from tests.support.payloads import API_KEY, API_SECRET, ENCRYPTION_KEY, OTHER_SHOP, SHOP

SECRET_NAMES = ("SHOPIFY_API_KEY", "SHOPIFY_API_SECRET", "TIERLINE_ENCRYPTION_KEY")


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No ``.env`` or ``./data`` from the checkout; no settings from the outer environment;
    and the root log handlers the CLI installs (bound to the runner's stderr) are undone."""
    monkeypatch.chdir(tmp_path)
    for name in (
        *SECRET_NAMES,
        "SHOPIFY_API_SECRET_PREVIOUS",
        "SHOPIFY_APP_URL",
        "DATABASE_URL",
        "TIERLINE_ENV",
    ):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers = list(root.handlers)
    yield
    root.handlers[:] = handlers


@pytest.fixture
def database_file(tmp_path: Path) -> Path:
    return tmp_path / "db" / "tierline.db"


@pytest.fixture
def url(database_file: Path) -> str:
    return f"sqlite+aiosqlite:///{database_file}"


def run(args: list[str], url: str, **env: str | None) -> Result:
    values: dict[str, str | None] = {"DATABASE_URL": url, "TIERLINE_ENV": "development"}
    values.update(env)
    return CliRunner().invoke(app, args, env=values, catch_exceptions=False)


def production_env(**overrides: str | None) -> dict[str, str | None]:
    values: dict[str, str | None] = {
        "TIERLINE_ENV": "production",
        "SHOPIFY_API_KEY": API_KEY,
        "SHOPIFY_API_SECRET": API_SECRET,
        "TIERLINE_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "SHOPIFY_APP_URL": "https://tierline.example.com",
    }
    values.update(overrides)
    return values


def query(database_file: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(database_file) as conn:
        return conn.execute(sql, params).fetchall()


def migrated(url: str) -> None:
    result = run(["migrate"], url)
    assert result.exit_code == 0, result.output


def add_deliveries(url: str, shop: str, statuses: Mapping[str, int]) -> dict[str, list[int]]:
    """Store deliveries for ``shop`` in the given statuses; returns their ids by status."""

    async def _add() -> dict[str, list[int]]:
        engine = make_engine(make_settings(url))
        ids: dict[str, list[int]] = {}
        try:
            async with session_scope(make_sessionmaker(engine)) as session:
                shop_id = await get_or_create_shop_id(session, shop)
                for status, count in statuses.items():
                    for _ in range(count):
                        webhook_id = str(uuid.uuid4())
                        await inbox.store_delivery(
                            session,
                            inbox.NewDelivery(
                                webhook_id=webhook_id,
                                event_id=None,
                                topic="orders/create",
                                shop_id=shop_id,
                                shop_domain=shop,
                                api_version="2026-04",
                                triggered_at=None,
                                body=b"{}",
                            ),
                        )
                        delivery_id = await session.scalar(
                            sa.select(inbox.deliveries.c.id).where(
                                inbox.deliveries.c.webhook_id == webhook_id
                            )
                        )
                        assert delivery_id is not None
                        if status != "pending":
                            await inbox.settle(session, [delivery_id], status, "boom")
                        ids.setdefault(status, []).append(int(delivery_id))
        finally:
            await engine.dispose()
        return ids

    return asyncio.run(_add())


def statuses(database_file: Path) -> dict[int, str]:
    return {int(str(i)): str(s) for i, s in query(database_file, "SELECT id, status FROM webhook_deliveries")}


class TestMigrate:
    def test_migrate_creates_the_schema(self, url: str, database_file: Path) -> None:
        result = run(["migrate"], url)

        assert result.exit_code == 0, result.output
        (revision,) = query(database_file, "SELECT version_num FROM alembic_version")
        assert str(revision[0]) in result.output
        tables = {
            str(r[0]) for r in query(database_file, "SELECT name FROM sqlite_master WHERE type='table'")
        }
        assert {"shops", "api_keys", "webhook_deliveries"} <= tables

    def test_migrate_twice_is_a_no_op(self, url: str, database_file: Path) -> None:
        migrated(url)
        first = query(database_file, "SELECT version_num FROM alembic_version")

        result = run(["migrate"], url)

        assert result.exit_code == 0, result.output
        assert query(database_file, "SELECT version_num FROM alembic_version") == first

    def test_migrate_on_postgresql(self, postgres_database: str | None) -> None:
        if postgres_database is None:
            pytest.skip("PostgreSQL is not reachable at TEST_DATABASE_URL")
        result = run(["migrate"], postgres_database)
        assert result.exit_code == 0, result.output
        assert "database at revision" in result.output

    def test_production_without_secrets_fails_naming_each(self, url: str, database_file: Path) -> None:
        result = run(["migrate"], url, TIERLINE_ENV="production")

        assert result.exit_code != 0
        for name in SECRET_NAMES:
            assert name in result.output
        assert not database_file.exists()

    @pytest.mark.parametrize("placeholder", ["changeme", "CHANGEME", "  ", "tierline-dev-secret"])
    def test_placeholder_secret_counts_as_missing(self, url: str, placeholder: str) -> None:
        result = run(["migrate"], url, **production_env(SHOPIFY_API_SECRET=placeholder))

        assert result.exit_code != 0
        assert "SHOPIFY_API_SECRET" in result.output
        assert "SHOPIFY_API_KEY" not in result.output
        assert "TIERLINE_ENCRYPTION_KEY" not in result.output

    @pytest.mark.parametrize(
        "command", [["serve", "--host", "256.0.0.1", "--port", "1"], ["worker", "--drain"]]
    )
    def test_serve_and_worker_refuse_missing_production_secrets(self, url: str, command: list[str]) -> None:
        result = run(command, url, **production_env(TIERLINE_ENCRYPTION_KEY="changeme"))

        assert result.exit_code != 0
        assert "TIERLINE_ENCRYPTION_KEY" in result.output

    @pytest.mark.parametrize(
        "command", [["migrate"], ["worker", "--drain"], ["serve", "--host", "256.0.0.1", "--port", "1"]]
    )
    def test_production_refuses_a_stand_in_shopify(
        self, url: str, database_file: Path, command: list[str]
    ) -> None:
        result = run(command, url, **production_env(TIERLINE_SHOPIFY_URL="http://127.0.0.1:9010/{shop}"))

        assert result.exit_code != 0
        assert "TIERLINE_SHOPIFY_URL" in result.output
        assert "SHOPIFY_API_SECRET" not in result.output
        assert not database_file.exists()

    def test_production_accepts_the_default_shopify_url(self, url: str) -> None:
        result = run(["migrate"], url, **production_env(TIERLINE_SHOPIFY_URL="https://{shop}"))

        assert result.exit_code == 0, result.output

    @pytest.mark.parametrize("value", ["http://127.0.0.1:9010", "ftp://{shop}", "https://{shop}/?x=1"])
    def test_a_malformed_shopify_url_is_refused_by_name(self, url: str, value: str) -> None:
        result = run(["migrate"], url, TIERLINE_SHOPIFY_URL=value)

        assert result.exit_code != 0
        assert "TIERLINE_SHOPIFY_URL" in result.output

    def test_production_with_every_secret_migrates(self, url: str, database_file: Path) -> None:
        result = run(["migrate"], url, **production_env())

        assert result.exit_code == 0, result.output
        assert query(database_file, "SELECT count(*) FROM alembic_version") == [(1,)]


class TestProductionRefusesUnsafeSettings:
    """Issue 14, item 4: each unsafe value stops serve, worker and migrate, naming its variable."""

    COMMANDS = (["migrate"], ["worker", "--drain"], ["serve", "--host", "127.0.0.1", "--port", "1"])

    @pytest.mark.parametrize(
        ("variable", "value", "reason"),
        [
            # A session token forged with the public development secret read another shop's data.
            ("SHOPIFY_API_SECRET_PREVIOUS", "tierline-dev-secret", "development value"),
            ("SHOPIFY_API_SECRET_PREVIOUS", "changeme", "placeholder"),
            ("SHOPIFY_API_SECRET_PREVIOUS", "x", "shorter than 16"),
            ("SHOPIFY_API_SECRET", "x", "shorter than 16"),
            ("SHOPIFY_API_SECRET", "0123456789abcde", "shorter than 16"),
            ("TIERLINE_ENCRYPTION_KEY", "k", "shorter than 32"),
            ("TIERLINE_ENCRYPTION_KEY", "0123456789abcdef0123456789abcde", "shorter than 32"),
            ("SHOPIFY_APP_URL", None, "https://"),
            ("SHOPIFY_APP_URL", "http://tierline.example.com", "https://"),
            ("SHOPIFY_APP_URL", "tierline.example.com", "https://"),
            ("SHOPIFY_APP_URL", "https://", "https://"),
        ],
    )
    def test_each_command_refuses_naming_the_variable(
        self, url: str, database_file: Path, variable: str, value: str | None, reason: str
    ) -> None:
        for command in self.COMMANDS:
            result = run(command, url, **production_env(**{variable: value}))

            assert result.exit_code != 0, (command, result.output)
            assert variable in result.output
            assert reason in result.output
            assert "Traceback" not in result.output
            others = {"SHOPIFY_API_SECRET", "TIERLINE_ENCRYPTION_KEY", "SHOPIFY_APP_URL"} - {variable}
            assert not any(f"{name} " in result.output for name in others), result.output
        assert not database_file.exists()  # nothing ran

    def test_every_problem_is_named_at_once(self, url: str) -> None:
        env = production_env(
            SHOPIFY_API_SECRET="short", TIERLINE_ENCRYPTION_KEY="short", SHOPIFY_APP_URL=None
        )
        result = run(["migrate"], url, **env)
        assert result.exit_code != 0
        for name in ("SHOPIFY_API_SECRET", "TIERLINE_ENCRYPTION_KEY", "SHOPIFY_APP_URL"):
            assert name in result.output

    @pytest.mark.parametrize("previous", [None, "previous-secret-0123456789abcdef"])
    def test_safe_settings_start(self, url: str, previous: str | None) -> None:
        result = run(["migrate"], url, **production_env(SHOPIFY_API_SECRET_PREVIOUS=previous))
        assert result.exit_code == 0, result.output

    def test_development_still_accepts_short_values_and_http(self, url: str) -> None:
        result = run(
            ["migrate"],
            url,
            SHOPIFY_API_SECRET="x",
            TIERLINE_ENCRYPTION_KEY="k",
            SHOPIFY_APP_URL="http://127.0.0.1:8000",
        )
        assert result.exit_code == 0, result.output


class TestApiKeyCreate:
    def test_prints_a_key_that_authenticates(self, url: str, database_file: Path) -> None:
        migrated(url)

        result = run(["api-key", "create", "--shop", "Demo.myshopify.com"], url)

        assert result.exit_code == 0, result.output
        key = result.stdout.strip().splitlines()[-1]
        assert len(key) >= 32
        assert " " not in key
        (row,) = query(
            database_file,
            "SELECT s.domain, k.key_hash FROM api_keys k JOIN shops s ON s.id = k.shop_id",
        )
        assert row == ("demo.myshopify.com", hashlib.sha256(key.encode()).hexdigest())
        with TestClient(app=create_app(make_settings(url))) as client:
            ok = client.get("/api/deliveries", headers={"Authorization": f"Bearer {key}"})
            wrong = client.get("/api/deliveries", headers={"Authorization": f"Bearer {key}x"})
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"items": [], "nextCursor": None}
        assert wrong.status_code == 401

    def test_each_key_is_new_and_the_shop_is_created_once(self, url: str, database_file: Path) -> None:
        migrated(url)

        keys = [
            run(["api-key", "create", "--shop", SHOP], url).stdout.strip().splitlines()[-1] for _ in range(2)
        ]

        assert keys[0] != keys[1]
        assert query(database_file, "SELECT domain FROM shops") == [(SHOP,)]
        assert len(query(database_file, "SELECT id FROM api_keys")) == 2

    @pytest.mark.parametrize("shop", ["evil.com", "a.myshopify.com.evil.com", "", "https://a.myshopify.com"])
    def test_invalid_shop_domain_fails_with_a_message(self, url: str, database_file: Path, shop: str) -> None:
        migrated(url)

        result = run(["api-key", "create", "--shop", shop], url)

        assert result.exit_code != 0
        assert "shop domain" in result.output
        assert result.stdout.strip() == ""
        assert query(database_file, "SELECT count(*) FROM api_keys") == [(0,)]
        assert query(database_file, "SELECT count(*) FROM shops") == [(0,)]


class TestReplay:
    def test_bogus_status_fails(self, url: str) -> None:
        migrated(url)
        result = run(["replay", "--status", "bogus"], url)
        assert result.exit_code != 0
        assert "--status" in result.output

    def test_invalid_shop_fails(self, url: str) -> None:
        migrated(url)
        result = run(["replay", "--shop", "evil.com"], url)
        assert result.exit_code != 0
        assert "evil.com" in result.output

    def test_requeues_failed_and_dead_by_default(self, url: str, database_file: Path) -> None:
        migrated(url)
        ids = add_deliveries(url, SHOP, {"pending": 1, "processed": 1, "failed": 2, "dead": 1, "ignored": 1})
        before = statuses(database_file)

        result = run(["replay"], url)

        assert result.exit_code == 0, result.output
        assert result.stdout.strip().splitlines()[-1] == "replayed 3 deliveries"
        after = statuses(database_file)
        requeued = set(ids["failed"] + ids["dead"])
        assert {i for i, s in after.items() if s == "pending"} == requeued | set(ids["pending"])
        assert {i: after[i] for i in after if i not in requeued} == {
            i: before[i] for i in after if i not in requeued
        }
        rows = query(
            database_file,
            "SELECT attempts, last_error, processed_at FROM webhook_deliveries WHERE status = 'pending'",
        )
        assert set(rows) == {(0, None, None)}

    def test_status_and_shop_filters(self, url: str, database_file: Path) -> None:
        migrated(url)
        mine = add_deliveries(url, SHOP, {"ignored": 2, "failed": 1})
        theirs = add_deliveries(url, OTHER_SHOP, {"ignored": 1})

        result = run(["replay", "--status", "ignored", "--shop", SHOP.upper()], url)

        assert result.exit_code == 0, result.output
        assert result.stdout.strip().splitlines()[-1] == "replayed 2 deliveries"
        after = statuses(database_file)
        assert [after[i] for i in mine["ignored"]] == ["pending", "pending"]
        assert [after[i] for i in mine["failed"]] == ["failed"]
        assert [after[i] for i in theirs["ignored"]] == ["ignored"]

    def test_unknown_shop_replays_nothing(self, url: str, database_file: Path) -> None:
        migrated(url)
        add_deliveries(url, SHOP, {"failed": 1})

        result = run(["replay", "--shop", "nobody.myshopify.com"], url)

        assert result.exit_code == 0, result.output
        assert result.stdout.strip().splitlines()[-1] == "replayed 0 deliveries"
        assert set(statuses(database_file).values()) == {"failed"}

    def test_one_delivery_by_id(self, url: str, database_file: Path) -> None:
        migrated(url)
        ids = add_deliveries(url, SHOP, {"failed": 2})

        result = run(["replay", "--id", str(ids["failed"][1])], url)

        assert result.exit_code == 0, result.output
        assert result.stdout.strip().splitlines()[-1] == "replayed 1 deliveries"
        after = statuses(database_file)
        assert (after[ids["failed"][0]], after[ids["failed"][1]]) == ("failed", "pending")


def _command_paths() -> list[list[str]]:
    """Every command and group of ``tierline``, from the command tree itself."""
    import typer.main

    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        paths.append(path)
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


class TestHelp:
    def test_every_command_is_covered(self) -> None:
        assert {" ".join(p) for p in _command_paths()} >= {"serve", "api-key list", "api-key revoke"}

    @pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "tierline")
    def test_help_is_plain_text_with_named_values(self, path: list[str], url: str) -> None:
        result = run([*path, "--help"], url)
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output
        # Options name their value (--port PORT, --shop DOMAIN), never a bare type (--port <int>).
        assert not re.search(r"--[\w-]+ <\w", result.output), result.output
        assert "╭" not in result.output
