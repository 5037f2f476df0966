"""Engine settings that protect data at rest: SQLite zeroes what it deletes (``secure_delete``).

Without it SQLite leaves deleted rows in free pages and unused cell space, so a redacted
customer's email stayed readable in the database file (issue 14). SQLite only: PostgreSQL needs
VACUUM instead (docs/operations.md).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.db import make_engine, make_sessionmaker
from tests.conftest import make_settings
from tests.support import deliveries as helpers
from tests.support.deliveries import Delivery
from tests.support.payloads import customer_payload, next_id, order_payload

pytestmark = pytest.mark.anyio

EMAIL = "ophelia.redactable@example.net"
PHONE = "+15557654321"


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "tierline.db"
    path.write_bytes(sqlite_template.read_bytes())
    return f"sqlite+aiosqlite:///{path}"


def engine_without_default_secure_delete(settings: Settings) -> AsyncEngine:
    """tierline's engine, on a SQLite whose build does not zero deleted content by default.

    Some builds turn ``secure_delete`` on at compile time (Debian's), others do not (most
    others): a listener that runs before tierline's turns it off, so the test shows that
    tierline itself turns it on, whatever the build.
    """
    engine = make_engine(settings)

    def _default_off(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA secure_delete=OFF")
        cursor.close()

    event.listen(engine.sync_engine, "connect", _default_off, insert=True)
    return engine


def file_bytes(database: Path) -> bytes:
    """The database file after a checkpoint that moves the WAL into it and truncates the WAL."""
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return database.read_bytes()


async def test_every_sqlite_connection_zeroes_deleted_content(sqlite_url: str) -> None:
    engine = engine_without_default_secure_delete(make_settings(sqlite_url))
    try:
        connections = [
            await (await engine.connect()).execution_options(tierline_readonly=True) for _ in range(3)
        ]
        values = [(await conn.exec_driver_sql("PRAGMA secure_delete")).scalar() for conn in connections]
        for conn in connections:
            await conn.close()
    finally:
        await engine.dispose()
    assert values == [1, 1, 1]


async def test_a_redacted_customer_leaves_no_bytes_in_the_database_file(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = make_settings(sqlite_url)
    engine = engine_without_default_secure_delete(settings)
    sessionmaker = make_sessionmaker(engine)
    customer_id, order_id = next_id(), next_id()
    customer = customer_payload(customer_id, email=EMAIL, phone=PHONE)
    order = order_payload(order_id, customer_id=customer_id, email=EMAIL, phone=PHONE)
    try:
        await helpers.apply(
            sessionmaker,
            settings,
            [Delivery.of("customers/create", customer), Delivery.of("orders/create", order)],
        )
        database = tmp_path / "tierline.db"
        assert EMAIL.encode() in file_bytes(database)  # it was written to the file

        [redact_id] = await helpers.apply(
            sessionmaker,
            settings,
            [
                Delivery.of(
                    "customers/redact",
                    {
                        "customer": {"id": customer_id, "email": EMAIL, "phone": PHONE},
                        "orders_to_redact": [order_id],
                    },
                )
            ],
        )
        assert (await helpers.delivery(sessionmaker, redact_id))["status"] == "processed"
        assert await helpers.customers(sessionmaker) == {}  # the rows are gone...
    finally:
        await engine.dispose()
    # ...and their bytes are not left behind in free pages or unused cell space.
    raw = file_bytes(database)
    assert EMAIL.encode() not in raw
    assert PHONE.encode() not in raw
