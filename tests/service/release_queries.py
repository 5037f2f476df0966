"""The previous release's queries: recorded SQL, replayed against a newer schema.

During a rolling deploy (docs/operations.md) the release command migrates the database while
machines of the previous release still serve webhooks, run the worker and answer the API. Every
migration must therefore leave the previous release's SQL working (expand, then contract).

``record`` runs a workload through the real application on PostgreSQL (signed webhooks of every
kind through intake, the worker, each read API, settings changes, replays, redactions) and keeps
every statement the driver executed, with its parameters, connection and the commits and
rollbacks between them. It runs the workload twice, for two shops: the first phase stands for
the data already in the database when the migration runs, the second for the previous release's
traffic after it. ``replay`` executes a phase on another database, statement for statement, and
reports the first one that fails.

Re-record after each release reaches production (``make release-queries``), so the file always
holds the SQL of the release running in production; tests/service/test_migrations_rolling.py
replays it around every migration written since.

    python -m tests.service.release_queries [--output PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import gzip
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from litestar.testing import AsyncTestClient
from psycopg.types.json import Json, Jsonb
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import Pool

from service.app import create_app
from service.config import Settings
from service.db import make_engine, make_sessionmaker, session_scope
from service.domain.api_keys import create_api_key
from service.migrate import alembic_config, upgrade
from service.simulate import generate_traffic
from tests.support.payloads import (
    API_KEY,
    API_SECRET,
    ENCRYPTION_KEY,
    fulfillment_event_payload,
    fulfillment_payload,
    refund_payload,
    return_payload,
    signed_webhook,
)
from webhooks.handlers import build_router
from webhooks.worker import InboxWorker

RECORDING = Path(__file__).with_name("release_queries.json.gz")
DEFAULT_PG_URL = "postgresql://127.0.0.1:5432/test"
PHASE_SHOPS = ("release-before.myshopify.com", "release-after.myshopify.com")
#: A statement of the previous release that runs longer than this on the replay is a failure.
STATEMENT_TIMEOUT_MS = 20_000


# ---------------------------------------------------------------------------------------------
# Parameters as JSON


def encode(value: Any) -> Any:
    """A driver parameter as JSON, tagged where JSON has no such type."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, psycopg.Binary):
        return {"$binary": base64.b64encode(bytes(value.obj)).decode()}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, Jsonb | Json):
        tag = "$jsonb" if isinstance(value, Jsonb) else "$json"
        dumps = value.dumps or json.dumps
        return {tag: dumps(value.obj)}
    if isinstance(value, list):
        return [encode(item) for item in value]
    raise TypeError(f"cannot record a driver parameter of type {type(value).__name__}")


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    [(tag, raw)] = value.items()
    match tag:
        case "$decimal":
            return Decimal(raw)
        case "$datetime":
            return dt.datetime.fromisoformat(raw)
        case "$date":
            return dt.date.fromisoformat(raw)
        case "$bytes":
            return base64.b64decode(raw)
        case "$binary":
            return psycopg.Binary(base64.b64decode(raw))
        case "$uuid":
            return uuid.UUID(raw)
        case "$json":
            return Json(raw, dumps=str)
        case "$jsonb":
            return Jsonb(raw, dumps=str)
    raise ValueError(f"unknown parameter tag {tag}")


def encode_parameters(parameters: Any) -> Any:
    if parameters is None:
        return None
    if isinstance(parameters, dict):
        return {"$params": {key: encode(value) for key, value in parameters.items()}}
    return {"$params": [encode(value) for value in parameters]}


def decode_parameters(parameters: Any) -> Any:
    if parameters is None:
        return None
    params = parameters["$params"]
    if isinstance(params, dict):
        return {key: decode(value) for key, value in params.items()}
    return [decode(value) for value in params]


# ---------------------------------------------------------------------------------------------
# Recording


@dataclass
class Recorder:
    """Driver-level events of every engine and pool, in the order they completed."""

    statements: list[str]
    events: list[list[Any]]
    connections: dict[int, int]

    @classmethod
    def empty(cls) -> Recorder:
        return cls([], [], {})

    def _connection(self, dbapi_connection: Any) -> int:
        return self.connections.setdefault(id(dbapi_connection), len(self.connections))

    def _statement(self, sql: str) -> int:
        try:
            return self.statements.index(sql)
        except ValueError:
            self.statements.append(sql)
            return len(self.statements) - 1

    def after_cursor_execute(
        self, conn: Connection, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool
    ) -> None:
        if conn.dialect.name != "postgresql":
            return
        key = self._connection(conn.connection.dbapi_connection)
        if many:
            params: Any = [encode_parameters(p) for p in parameters]
        else:
            params = encode_parameters(parameters)
        self.events.append(["executemany" if many else "execute", key, self._statement(statement), params])

    def commit(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            self.events.append(["commit", self._connection(conn.connection.dbapi_connection)])

    def rollback(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            self.events.append(["rollback", self._connection(conn.connection.dbapi_connection)])

    def reset(self, dbapi_connection: Any, _record: Any, _state: Any = None) -> None:
        # A connection returned to the pool is rolled back (a read that never committed).
        if id(dbapi_connection) in self.connections:
            self.events.append(["rollback", self._connection(dbapi_connection)])

    @contextmanager
    def listening(self) -> Iterator[Recorder]:
        hooks: list[tuple[Any, str, Any]] = [
            (Engine, "after_cursor_execute", self.after_cursor_execute),
            (Engine, "commit", self.commit),
            (Engine, "rollback", self.rollback),
            (Pool, "reset", self.reset),
        ]
        for target, name, fn in hooks:
            event.listen(target, name, fn)
        try:
            yield self
        finally:
            for target, name, fn in hooks:
                event.remove(target, name, fn)


def settings_for(url: str) -> Settings:
    return Settings(
        _env_file=None,
        DATABASE_URL=url,
        SHOPIFY_API_KEY=API_KEY,
        SHOPIFY_API_SECRET=API_SECRET,
        TIERLINE_ENCRYPTION_KEY=ENCRYPTION_KEY,
        TIERLINE_WORKER="off",
        TIERLINE_ENV="development",
    )


async def _ok(response: Any, what: str) -> Any:
    if not 200 <= response.status_code < 300:
        raise RuntimeError(f"workload step {what} answered {response.status_code}: {response.text[:300]}")
    return response.json() if "json" in response.headers.get("content-type", "") else None


async def workload(settings: Settings, shop: str, seed: int) -> None:
    """What one shop's traffic makes the previous release execute: intake, worker, API, support."""
    app = create_app(settings)
    engine = make_engine(settings)
    worker = InboxWorker(make_sessionmaker(engine), build_router(), settings)
    deliveries = generate_traffic(shop=shop, customers=5, orders=16, seed=seed)
    orders = [d.payload for d in deliveries if d.topic == "orders/create"]
    order_id, customer_id = orders[0]["id"], orders[0]["customer"]["id"]
    other_order, other_customer = orders[-1]["id"], orders[-1]["customer"]["id"]
    facts = [
        ("fulfillments/create", fulfillment_payload(order_id * 3, order_id, shipment_status="in_transit")),
        (
            "fulfillment_events/create",
            fulfillment_event_payload(order_id * 5, order_id * 3, order_id, "delivered"),
        ),
        ("returns/request", return_payload(order_id * 7, order_id)),
        ("refunds/create", refund_payload(order_id * 11, order_id, amount="10.00")),
        ("customers/data_request", {"customer": {"id": customer_id}, "orders_requested": [order_id]}),
        ("customers/redact", {"customer": {"id": other_customer}, "orders_to_redact": [other_order]}),
    ]
    try:
        async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
            for delivery in deliveries:
                body = delivery.body()
                headers = delivery.headers(shop=shop, secret=API_SECRET, body=body)
                response = await client.post("/webhooks/shopify", content=body, headers=headers)
                await _ok(response, delivery.topic)
            for topic, payload in facts:
                headers, body = signed_webhook(topic, payload, shop=shop)
                await _ok(await client.post("/webhooks/shopify", content=body, headers=headers), topic)
            await worker.drain()
            async with session_scope(make_sessionmaker(engine)) as session:
                key = await create_api_key(session, shop)
            auth = {"Authorization": f"Bearer {key}"}

            async def get(path: str) -> Any:
                return await _ok(await client.get(path, headers=auth), path)

            async def send(method: str, path: str, body: Any) -> Any:
                return await _ok(await client.request(method, path, json=body, headers=auth), path)

            listed = await get("/api/customers?limit=2")
            customer_id = listed["items"][0]["id"]
            order_id = (await get(f"/api/orders?customerId={customer_id}"))["items"][0]["id"]
            await get(f"/api/customers?limit=2&cursor={listed['nextCursor']}")
            await get("/api/customers?tier=gold,platinum&sort=orderCount")
            await get("/api/customers?search=a&sort=name")
            await get("/api/customers?sort=lastOrderAt")
            await get(f"/api/customers/{customer_id}")
            await get(f"/api/customers/{customer_id}/addresses")
            await get("/api/orders?paymentMethod=cod&limit=3")
            await send("POST", "/api/orders/enrich", {"orderIds": [str(o["id"]) for o in orders]})
            await send("POST", "/api/stats/customers", {"customerIds": [str(customer_id), "1"]})
            await get("/api/reports/top-customers?period=all")
            await get("/api/reports/overview")
            current = await get("/api/settings")
            thresholds = {"platinum": "900", "gold": "500", "silver": "100"}
            await send("PUT", "/api/settings", {**current, "tierThresholds": thresholds})
            await send("PUT", f"/api/orders/{order_id}/tracking-status", {"status": "rto_initiated"})
            await send("POST", "/api/tiers/recalculate", {})
            inbox = await get("/api/deliveries?limit=5")
            await send("POST", f"/api/deliveries/{inbox['items'][0]['id']}/replay", {})
            requests = await get("/api/compliance/requests")
            for request in requests["items"]:
                await get(f"/api/compliance/requests/{request['id']}")
            await _ok(await client.get("/ready"), "/ready")
            await _ok(await client.get("/metrics"), "/metrics")
            farewell = (("app/uninstalled", {"domain": shop}), ("shop/redact", {"shop_domain": shop}))
            for topic, payload in farewell:
                headers, body = signed_webhook(topic, payload, shop=shop)
                await _ok(await client.post("/webhooks/shopify", content=body, headers=headers), topic)
            await worker.drain()
    finally:
        await engine.dispose()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def git_revision() -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown"
    result = subprocess.run([git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


async def record(url: str, shops: tuple[str, ...] = PHASE_SHOPS) -> dict[str, Any]:
    """Migrate the (empty) database at ``url`` to head and record the workload, one phase a shop."""
    settings = settings_for(url)
    await upgrade(settings)
    phases = []
    for seed, shop in enumerate(shops, start=1):
        recorder = Recorder.empty()
        with recorder.listening():
            await workload(settings, shop, seed)
        phases.append({"shop": shop, "statements": recorder.statements, "events": recorder.events})
    return {
        "about": "SQL of the release in production, replayed around newer migrations (release_queries.py)",
        "revision": head_revision(),
        "commit": git_revision(),
        "phases": phases,
    }


# ---------------------------------------------------------------------------------------------
# Replaying


@dataclass(frozen=True)
class Failure:
    index: int
    statement: str
    sqlstate: str | None
    message: str

    def __str__(self) -> str:
        return f"event {self.index}: [{self.sqlstate}] {self.message}\n  in: {self.statement[:600]}"


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def replay(url: str, phase: dict[str, Any]) -> Failure | None:
    """Execute a recorded phase on ``url``, one connection per recorded connection."""
    connections: dict[int, psycopg.Connection[Any]] = {}
    statements: list[str] = phase["statements"]
    try:
        for index, (kind, key, *rest) in enumerate(phase["events"]):
            connection = connections.get(key)
            if connection is None:
                options = f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"
                connection = psycopg.connect(libpq(url), options=options)
                connections[key] = connection
            sql = statements[rest[0]] if rest else ""
            try:
                if kind == "execute":
                    connection.execute(sql.encode(), decode_parameters(rest[1]))
                elif kind == "executemany":
                    with connection.cursor() as cursor:
                        cursor.executemany(sql.encode(), [decode_parameters(p) for p in rest[1]])
                elif kind == "commit":
                    connection.commit()
                else:
                    connection.rollback()
            except psycopg.Error as exc:
                return Failure(index, sql or kind, exc.sqlstate, str(exc).strip())
        return None
    finally:
        for connection in connections.values():
            connection.rollback()
            connection.close()


def save(recording: dict[str, Any], path: Path) -> None:
    text = json.dumps(recording, separators=(",", ":")) + "\n"
    path.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))


def load(path: Path = RECORDING) -> dict[str, Any]:
    recording: dict[str, Any] = json.loads(gzip.decompress(path.read_bytes()))
    return recording


# ---------------------------------------------------------------------------------------------
# Command line


def main() -> None:
    parser = argparse.ArgumentParser(description="Record the current release's SQL (docs/operations.md).")
    parser.add_argument("--output", type=Path, default=RECORDING)
    args = parser.parse_args()
    admin = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL)
    name = f"tierline_record_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        url = make_url(admin).set(drivername="postgresql+psycopg", database=name)
        recording = asyncio.run(record(url.render_as_string(hide_password=False)))
    finally:
        with psycopg.connect(libpq(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
    save(recording, args.output)
    events = sum(len(p["events"]) for p in recording["phases"])
    statements = len({s for p in recording["phases"] for s in p["statements"]})
    print(  # noqa: T201
        f"recorded {events} events, {statements} distinct statements at revision {recording['revision']} "
        f"(commit {recording['commit']}) into {args.output}"
    )


if __name__ == "__main__":
    main()
