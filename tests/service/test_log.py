"""Logs never carry bodies, tokens or personal data (docs/operations.md), in either format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.app import create_app
from service.config import Settings
from service.log import ConsoleFormatter, JsonFormatter, configure_logging
from tests.conftest import make_settings
from tests.support.deliveries import drain
from tests.support.payloads import address, customer_payload, next_id, order_payload, signed_webhook

pytestmark = pytest.mark.anyio

SECRET_EMAIL = "very.private.person@example.org"
SECRET_PHONE = "+91 99999 12345"
SECRET_STREET = "221B Secret Lane"
SECRET_NAME = "Zebediah"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every log line of the process under the project's own logging setup at DEBUG level,
    formatted both as JSON (production) and as console lines (development)."""
    stream = io.StringIO()
    configure_logging(production=True, level=logging.DEBUG, stream=stream)
    console_handler = logging.StreamHandler(stream)
    console_handler.setFormatter(ConsoleFormatter())
    root = logging.getLogger()
    root.addHandler(console_handler)
    try:
        yield stream
    finally:
        root.removeHandler(console_handler)
        configure_logging(production=False)


class TestFormatters:
    def test_unknown_extra_fields_are_dropped(self, captured: io.StringIO) -> None:
        logging.getLogger("tierline.test").warning(
            "test.event",
            extra={"shop": "a.myshopify.com", "email": SECRET_EMAIL, "body": "x", "token": "shpat_123"},
        )
        text = captured.getvalue()
        assert "a.myshopify.com" in text
        for leaked in (SECRET_EMAIL, "shpat_123", '"body"'):
            assert leaked not in text

    def test_json_lines_are_json_with_event_and_level(self, captured: io.StringIO) -> None:
        logging.getLogger("tierline.test").info("webhook.accepted", extra={"topic": "orders/create"})
        first = captured.getvalue().splitlines()[0]
        entry = json.loads(first)
        assert entry["event"] == "webhook.accepted"
        assert entry["level"] == "info"
        assert entry["topic"] == "orders/create"
        assert entry["ts"].endswith("Z")

    def test_configure_logging_picks_json_in_production(self) -> None:
        configure_logging(production=True)
        try:
            handler = logging.getLogger().handlers[0]
            assert isinstance(handler.formatter, JsonFormatter)
        finally:
            configure_logging(production=False)
        assert isinstance(logging.getLogger().handlers[0].formatter, ConsoleFormatter)


class TestNoPersonalDataInLogs:
    async def test_intake_worker_and_failures_log_no_personal_data(
        self,
        database_url: str,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        captured: io.StringIO,
    ) -> None:
        app: Litestar = create_app(make_settings(database_url))
        customer_id = next_id()
        street = address(address1=SECRET_STREET, phone=SECRET_PHONE, first_name=SECRET_NAME)
        customer = customer_payload(
            customer_id,
            email=SECRET_EMAIL,
            phone=SECRET_PHONE,
            first_name=SECRET_NAME,
            default_address=street,
        )
        order = order_payload(next_id(), customer_id=customer_id, email=SECRET_EMAIL, shipping_address=street)
        bad = order_payload(next_id(), email=SECRET_EMAIL, total_price="not money")
        async with AsyncTestClient(app=app) as client:
            for topic, payload in (
                ("customers/create", customer),
                ("orders/create", order),
                ("orders/create", bad),
            ):
                headers, body = signed_webhook(topic, payload)
                assert (
                    await client.post("/webhooks/shopify", content=body, headers=headers)
                ).status_code == 200
            # A wrong signature and a bad header are logged too (as counters), never their bodies.
            headers, body = signed_webhook("orders/create", order, secret="wrong-secret-0123456789abcdef0123")
            assert (await client.post("/webhooks/shopify", content=body, headers=headers)).status_code == 401
        await drain(sessionmaker, settings)
        text = captured.getvalue()
        assert "webhook.accepted" in text
        assert "webhook.failed" in text  # the bad payload was logged, with its field name only
        for leaked in (SECRET_EMAIL, SECRET_PHONE, SECRET_STREET, SECRET_NAME, settings.shopify_api_secret):
            assert leaked not in text
