"""``tierline simulate`` (docs/operations.md): deterministic, realistic traffic and a sender that signs
and retries.

No database and no network: the sender talks to an ``httpx.MockTransport`` that checks every
signature the way the intake does.
"""

from __future__ import annotations

import json
import re
import socket
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from service import cli
from service.simulate import (
    API_VERSION,
    DEFAULT_START,
    SimulatedDelivery,
    generate_traffic,
    send_traffic,
)
from shopify_client import verify_webhook_hmac
from tests.conftest import make_settings
from tests.support.payloads import API_SECRET, SHOP
from webhooks.payloads import CustomerPayload, DeletedResourcePayload, OrderPayload

pytestmark = pytest.mark.anyio

START = datetime(2026, 2, 1, tzinfo=UTC)
CUSTOMERS = 50
ORDERS = 200
COD_GATEWAYS = {"cash on delivery (cod)", "cash_on_delivery"}
ORDER_TOPICS = {"orders/create", "orders/updated", "orders/cancelled", "orders/paid"}
MONEY_KEYS = {
    "total_price",
    "current_total_price",
    "subtotal_price",
    "current_subtotal_price",
    "total_tax",
    "current_total_tax",
    "total_discounts",
    "current_total_discounts",
    "total_line_items_price",
    "total_outstanding",
    "total_tip_received",
    "total_discount",
    "discounted_price",
    "price",
    "amount",
}
TWO_DECIMALS = re.compile(r"^\d+\.\d{2}$")
BASE_URL = "http://tierline.test"


@pytest.fixture(scope="module")
def traffic() -> list[SimulatedDelivery]:
    return generate_traffic(shop=SHOP, customers=CUSTOMERS, orders=ORDERS, seed=1, start=START)


def walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a JSON document, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def ids_in(deliveries: list[SimulatedDelivery]) -> set[int]:
    return {
        value
        for d in deliveries
        for key, value in walk(d.payload)
        if (key == "id" or key.endswith("_id")) and isinstance(value, int)
    }


def first_index(deliveries: list[SimulatedDelivery]) -> dict[tuple[str, int], int]:
    """Position of the first delivery of each (topic, resource id)."""
    positions: dict[tuple[str, int], int] = {}
    for index, d in enumerate(deliveries):
        positions.setdefault((d.topic, d.payload["id"]), index)
    return positions


def update_before_create(deliveries: list[SimulatedDelivery]) -> list[int]:
    positions = first_index(deliveries)
    return [
        order_id
        for (topic, order_id), index in positions.items()
        if topic == "orders/updated" and index < positions[("orders/create", order_id)]
    ]


def is_cod(payload: dict[str, Any]) -> bool:
    return any(name.lower() in COD_GATEWAYS for name in payload["payment_gateway_names"])


# --- the generator ---------------------------------------------------------------------------


def test_same_seed_gives_the_same_deliveries() -> None:
    first = generate_traffic(shop=SHOP, customers=20, orders=60, seed=11, start=START)
    second = generate_traffic(shop=SHOP, customers=20, orders=60, seed=11, start=START)
    assert first == second
    assert [d.body() for d in first] == [d.body() for d in second]
    assert generate_traffic(shop=SHOP, customers=5, orders=5, seed=3) == generate_traffic(
        shop=SHOP, customers=5, orders=5, seed=3
    )


def test_other_seed_gives_other_deliveries_and_ids() -> None:
    first = generate_traffic(shop=SHOP, customers=20, orders=60, seed=11, start=START)
    other = generate_traffic(shop=SHOP, customers=20, orders=60, seed=12, start=START)
    assert first != other
    assert not ids_in(first) & ids_in(other)
    assert not {d.webhook_id for d in first} & {d.webhook_id for d in other}


def test_default_start_keeps_the_history_in_a_fixed_window() -> None:
    deliveries = generate_traffic(shop=SHOP, customers=10, orders=30, seed=2)
    assert min(d.triggered_at for d in deliveries) >= DEFAULT_START
    assert all(d.triggered_at.tzinfo is not None for d in deliveries)


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="customers"):
        generate_traffic(shop=SHOP, customers=0, orders=1, seed=1)
    with pytest.raises(ValueError, match="orders"):
        generate_traffic(shop=SHOP, customers=1, orders=-1, seed=1)
    with pytest.raises(ValueError, match="days"):
        generate_traffic(shop=SHOP, customers=1, orders=1, seed=1, days=7)


def test_counts_and_topics(traffic: list[SimulatedDelivery]) -> None:
    created = {d.payload["id"] for d in traffic if d.topic == "customers/create"}
    orders = {d.payload["id"] for d in traffic if d.topic.startswith("orders/")}
    assert len(created) == CUSTOMERS
    assert len(orders) == ORDERS
    assert {d.payload["id"] for d in traffic if d.topic == "orders/create"} == orders
    assert len(traffic) > CUSTOMERS + ORDERS
    assert {d.topic for d in traffic} == {
        "customers/create",
        "customers/update",
        "customers/delete",
        "orders/create",
        "orders/updated",
        "orders/paid",
        "orders/cancelled",
        "orders/delete",
    }


def test_every_order_names_a_known_or_embedded_customer(traffic: list[SimulatedDelivery]) -> None:
    created = {d.payload["id"] for d in traffic if d.topic == "customers/create"}
    deleted = {d.payload["id"] for d in traffic if d.topic == "customers/delete"}
    for d in traffic:
        if d.topic in ORDER_TOPICS:
            customer = d.payload["customer"]
            assert customer is not None
            assert customer["id"] in created or customer.get("email") or customer.get("phone")
            assert customer["id"] not in deleted  # Shopify deletes only customers without orders
            assert customer["admin_graphql_api_id"] == f"gid://shopify/Customer/{customer['id']}"


def test_cod_and_prepaid_mix(traffic: list[SimulatedDelivery]) -> None:
    creates = [d.payload for d in traffic if d.topic == "orders/create"]
    unique = {p["id"]: p for p in creates}.values()
    share = sum(is_cod(p) for p in unique) / len(unique)
    assert 0.25 <= share <= 0.55
    gateways = Counter(name for p in unique for name in p["payment_gateway_names"])
    assert {"Cash on Delivery (COD)", "cash_on_delivery", "shopify_payments", "razorpay"} <= set(gateways)
    for payload in unique:
        assert payload["financial_status"] == ("pending" if is_cod(payload) else "paid")


def test_repeat_buyers_follow_a_skewed_distribution(traffic: list[SimulatedDelivery]) -> None:
    per_customer = Counter(
        p["customer"]["id"]
        for p in {d.payload["id"]: d.payload for d in traffic if d.topic == "orders/create"}.values()
    )
    counts = sorted(per_customer.values(), reverse=True)
    top = counts[: max(1, len(counts) // 5)]
    assert sum(top) >= 0.4 * ORDERS  # the top fifth of buyers place at least 40% of orders
    assert counts[0] >= 4 * statistics.median(counts)
    assert counts[-1] == 1


def test_some_deliveries_are_exact_duplicates(traffic: list[SimulatedDelivery]) -> None:
    by_id: defaultdict[str, list[SimulatedDelivery]] = defaultdict(list)
    for d in traffic:
        by_id[d.webhook_id].append(d)
    repeated = [group for group in by_id.values() if len(group) > 1]
    assert 1 <= len(repeated) <= 0.06 * len(traffic)
    for first, *others in repeated:
        for other in others:
            assert other == first
            assert other.body() == first.body()
    assert len({d.event_id for d in traffic}) == len(by_id)


def test_some_updates_arrive_before_their_create(traffic: list[SimulatedDelivery]) -> None:
    assert update_before_create(traffic)


@pytest.mark.parametrize("seed", range(1, 9))
def test_small_runs_also_deliver_out_of_order(seed: int) -> None:
    deliveries = generate_traffic(shop=SHOP, customers=5, orders=12, seed=seed, start=START)
    if any(d.topic == "orders/updated" for d in deliveries):
        assert update_before_create(deliveries)
    assert sum(1 for d in deliveries if d.topic == "customers/delete") == 1
    assert sum(1 for d in deliveries if d.topic == "orders/delete") == 1


def test_order_lifecycles(traffic: list[SimulatedDelivery]) -> None:
    history: defaultdict[int, list[SimulatedDelivery]] = defaultdict(list)
    for d in traffic:
        if d.topic.startswith("orders/"):
            history[d.payload["id"]].append(d)
    edited = 0
    for order_id, deliveries in history.items():
        deliveries.sort(key=lambda d: d.triggered_at)
        create = next(d.payload for d in deliveries if d.topic == "orders/create")
        stamps = [
            datetime.fromisoformat(d.payload["updated_at"]) for d in deliveries if "updated_at" in d.payload
        ]
        assert stamps == sorted(stamps)
        assert 1 <= len(create["line_items"]) <= 4
        for d in deliveries:
            payload = d.payload
            if d.topic == "orders/delete":
                assert payload == {"id": order_id}
                continue
            assert payload["admin_graphql_api_id"] == f"gid://shopify/Order/{order_id}"
            assert payload["test"] is False
            assert isinstance(payload["tags"], str)
            assert payload["currency"] == "INR"
            assert payload["shipping_address"]["country_code"] == "IN"
            assert payload["billing_address"]["city"]
            for key in ("created_at", "updated_at", "processed_at"):
                assert datetime.fromisoformat(payload[key]).utcoffset() is not None
            if d.topic == "orders/paid":
                assert payload["financial_status"] == "paid"
            if d.topic == "orders/cancelled":
                assert payload["cancelled_at"] is not None
                assert payload["cancelled_at"] >= payload["created_at"]
                assert payload["financial_status"] in ("voided", "refunded")
            if (
                d.topic == "orders/updated"
                and payload["current_total_price"] != create["current_total_price"]
            ):
                assert payload["updated_at"] > create["updated_at"]
                assert payload["total_price"] == create["total_price"]
                edited += 1
    assert edited >= 1


def test_line_items_come_from_a_catalogue(traffic: list[SimulatedDelivery]) -> None:
    lines = [line for d in traffic if d.topic == "orders/create" for line in d.payload["line_items"]]
    variants = {(line["product_id"], line["variant_id"]) for line in lines}
    assert 5 <= len(variants) <= 30
    assert any(" / " in (line["variant_title"] or "") for line in lines)
    for line in lines:
        assert line["vendor"]
        assert line["sku"]
        assert line["quantity"] >= 1
        assert line["admin_graphql_api_id"] == f"gid://shopify/LineItem/{line['id']}"


def test_amounts_are_two_decimal_strings_and_ids_are_64_bit(traffic: list[SimulatedDelivery]) -> None:
    amounts = 0
    for d in traffic:
        for key, value in walk(d.payload):
            if key in MONEY_KEYS:
                assert isinstance(value, str), (key, value)
                assert TWO_DECIMALS.fullmatch(value), (key, value)
                amounts += 1
    assert amounts > 1000
    ids = ids_in(traffic)
    assert ids
    assert all(2**40 < value < 2**63 for value in ids)
    assert min(ids) > 2**32


def test_customer_payloads(traffic: list[SimulatedDelivery]) -> None:
    versions: defaultdict[int, list[dict[str, Any]]] = defaultdict(list)
    for d in traffic:
        if d.topic in ("customers/create", "customers/update"):
            versions[d.payload["id"]].append(d.payload)
            assert d.payload["addresses"]
            assert d.payload["default_address"] in d.payload["addresses"]
            assert datetime.fromisoformat(d.payload["updated_at"]).utcoffset() is not None
    updated = [v for v in versions.values() if any(p["updated_at"] > v[0]["updated_at"] for p in v)]
    assert updated
    for d in traffic:
        if d.topic == "customers/delete":
            assert set(d.payload) == {"id", "tax_exemptions", "admin_graphql_api_id"}


def test_every_payload_validates_against_the_intake_models(traffic: list[SimulatedDelivery]) -> None:
    for d in traffic:
        if d.topic.endswith("/delete"):
            assert DeletedResourcePayload.model_validate_json(d.body()).id == d.payload["id"]
        elif d.topic.startswith("customers/"):
            customer = CustomerPayload.model_validate_json(d.body())
            assert customer.id == d.payload["id"]
            assert customer.updated_at is not None
            assert customer.default_address is not None
        else:
            order = OrderPayload.model_validate_json(d.body())
            assert order.id == d.payload["id"]
            assert order.customer is not None
            assert order.total_price == Decimal(d.payload["total_price"])
            assert order.current_total_price is not None
            assert order.test is False
            assert order.line_items
            assert order.updated_at is not None
            assert order.updated_at.tzinfo is not None


# --- the sender --------------------------------------------------------------------------------


class FakeTierline:
    """A webhook endpoint that checks what Shopify would send and answers like the intake."""

    def __init__(self, deliveries: list[SimulatedDelivery], *, secret: str = API_SECRET) -> None:
        self.by_id = {d.webhook_id: d for d in deliveries}
        self.secret = secret
        self.stored: dict[str, bytes] = {}
        self.calls: Counter[str] = Counter()
        self.order: list[str] = []
        self.problems: list[str] = []
        self.unavailable_once: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        if request.method != "POST" or request.url.path != "/webhooks/shopify":
            return httpx.Response(404)
        body = request.content
        if not verify_webhook_hmac(body, request.headers.get("x-shopify-hmac-sha256"), [self.secret]):
            return httpx.Response(401, json={"detail": "bad signature"})
        webhook_id = request.headers["X-Shopify-Webhook-Id"]
        self.calls[webhook_id] += 1
        self.order.append(webhook_id)
        self.check(request, webhook_id, body)
        if webhook_id in self.unavailable_once and self.calls[webhook_id] == 1:
            return httpx.Response(503, headers={"Retry-After": "5"})
        if webhook_id in self.stored:
            if self.stored[webhook_id] != body:
                self.problems.append(f"{webhook_id}: re-sent with another body")
            return httpx.Response(200, json={"status": "duplicate"})
        self.stored[webhook_id] = body
        return httpx.Response(200, json={"status": "accepted"})

    def check(self, request: httpx.Request, webhook_id: str, body: bytes) -> None:
        delivery = self.by_id.get(webhook_id)
        if delivery is None:
            self.problems.append(f"unknown webhook id {webhook_id}")
            return
        expected = {
            "content-type": "application/json",
            "x-shopify-topic": delivery.topic,
            "x-shopify-shop-domain": SHOP,
            "x-shopify-api-version": API_VERSION,
            "x-shopify-event-id": delivery.event_id,
        }
        for name, value in expected.items():
            if request.headers.get(name) != value:
                self.problems.append(f"{webhook_id}: {name} = {request.headers.get(name)!r}")
        triggered = datetime.fromisoformat(request.headers["x-shopify-triggered-at"].replace("Z", "+00:00"))
        if abs((triggered - delivery.triggered_at).total_seconds()) > 0.001:
            self.problems.append(f"{webhook_id}: triggered-at {triggered}")
        if json.loads(body) != delivery.payload:
            self.problems.append(f"{webhook_id}: body differs from the payload")


@pytest.fixture
def small_traffic() -> list[SimulatedDelivery]:
    return generate_traffic(shop=SHOP, customers=8, orders=25, seed=5, start=START)


async def test_sender_signs_retries_a_503_and_reports(small_traffic: list[SimulatedDelivery]) -> None:
    server = FakeTierline(small_traffic)
    repeats = Counter(d.webhook_id for d in small_traffic)
    target = next(d.webhook_id for d in small_traffic[5:] if repeats[d.webhook_id] == 1)
    server.unavailable_once.add(target)
    ticks: list[tuple[int, int]] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        report = await send_traffic(
            small_traffic,
            url=BASE_URL + "/",
            secret=API_SECRET,
            shop=SHOP,
            concurrency=4,
            http=http,
            progress=lambda done, total: ticks.append((done, total)),
            backoff=0,
        )
    total = len(small_traffic)
    assert server.problems == []
    assert server.calls[target] == 2
    assert report.sent == total
    assert report.status_counts == {200: total}
    assert report.retries == 1
    assert report.errors == 0
    assert report.accepted == len(repeats)
    assert report.duplicates == total - len(repeats) >= 1
    assert report.ok
    assert report.failed == 0
    assert report.rate > 0
    assert 0 <= report.p50_ms <= report.p99_ms
    assert len(ticks) == total
    assert ticks[-1] == (total, total)


async def test_sender_counts_unanswered_deliveries_as_errors(small_traffic: list[SimulatedDelivery]) -> None:
    attempts = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        report = await send_traffic(
            small_traffic, url=BASE_URL, secret=API_SECRET, shop=SHOP, http=http, max_attempts=3, backoff=0
        )
    total = len(small_traffic)
    assert attempts == 3 * total
    assert report.errors == total
    assert report.error_kinds == {"ConnectError": total}
    assert report.retries == 2 * total
    assert report.status_counts == {}
    assert report.failed == total
    assert not report.ok


async def test_sender_does_not_retry_a_refused_signature(small_traffic: list[SimulatedDelivery]) -> None:
    server = FakeTierline(small_traffic, secret="another-secret")
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        report = await send_traffic(
            small_traffic, url=BASE_URL, secret=API_SECRET, shop=SHOP, concurrency=1, http=http, backoff=0
        )
    assert report.status_counts == {401: len(small_traffic)}
    assert report.retries == 0
    assert report.failed == len(small_traffic)
    assert not report.ok


async def test_one_at_a_time_keeps_the_list_order(small_traffic: list[SimulatedDelivery]) -> None:
    server = FakeTierline(small_traffic)
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        report = await send_traffic(
            small_traffic, url=BASE_URL, secret=API_SECRET, shop=SHOP, concurrency=1, http=http
        )
    assert report.ok
    assert server.order == [d.webhook_id for d in small_traffic]


# --- the command -------------------------------------------------------------------------------


async def test_simulate_command_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings("sqlite+aiosqlite:///unused.db")
    expected = generate_traffic(shop=SHOP, customers=6, orders=15, seed=4)
    server = FakeTierline(expected)
    server.by_id = {}  # the command dates its history from today: ids match, times do not
    await cli._simulate(
        settings,
        url=BASE_URL,
        shop=SHOP,
        customers=6,
        orders=15,
        seed=4,
        concurrency=3,
        transport=httpx.MockTransport(server),
    )
    out = capsys.readouterr().out
    unique = len({d.webhook_id for d in expected})
    assert f"sent {len(expected)}  accepted {unique}  duplicates {len(expected) - unique}  errors 0" in out
    assert set(server.stored) == {d.webhook_id for d in expected}
    assert "deliveries/s" in out


async def test_simulate_command_fails_when_a_delivery_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings("sqlite+aiosqlite:///unused.db", SHOPIFY_API_SECRET="not-the-server-secret")
    server = FakeTierline([])
    with pytest.raises(typer.Exit) as info:
        await cli._simulate(
            settings,
            url=BASE_URL,
            shop=SHOP,
            customers=5,
            orders=5,
            seed=1,
            concurrency=2,
            transport=httpx.MockTransport(server),
        )
    assert info.value.exit_code == 1
    assert "did not end in 200 (HTTP 401:" in capsys.readouterr().err


def test_simulate_command_names_an_unreachable_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setattr(cli, "configure_logging", lambda **_: None)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"TIERLINE_ENV": "development", "SHOPIFY_API_SECRET": API_SECRET}
    result = CliRunner().invoke(
        cli.app,
        ["simulate", "--url", f"http://127.0.0.1:{port}", "--customers", "5", "--orders", "5"],
        env=env,
    )
    assert result.exit_code == 1
    assert (
        f"no tierline server answers at http://127.0.0.1:{port}; start one with `make run`, or name yours "
        "with PORT (in the environment or .env) or --url" in result.output
    )
