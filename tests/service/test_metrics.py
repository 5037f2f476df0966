"""/metrics carries what an on-call engineer alerts on (docs/operations.md, docs/operations.md)."""

from __future__ import annotations

import random
import re
import shutil
import string
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.app import create_app
from service.config import Settings
from service.metrics import record_settled
from tests.conftest import make_settings
from tests.support.deliveries import drain
from tests.support.payloads import customer_payload, next_id, signed_webhook
from webhooks.handlers import build_router
from webhooks.worker import InboxWorker

pytestmark = pytest.mark.anyio


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and ",".join(sorted((match.group(1) or "").split(","))) == wanted:
            return float(match.group(2))
    return 0.0


async def test_backlog_processing_and_http_latency_are_exposed(
    client: AsyncTestClient[Litestar], sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    headers, body = signed_webhook("customers/create", customer_payload(next_id()))
    assert (await client.post("/webhooks/shopify", content=body, headers=headers)).status_code == 200
    before = (await client.get("/metrics")).text
    assert sample(before, "tierline_inbox_backlog") == 1.0
    processed_before = sample(
        before, "tierline_webhook_deliveries_settled_total", topic="customers/create", status="processed"
    )
    await drain(sessionmaker, settings)  # this worker is not the app's: no on_settled hook
    await client.get("/api/customers/123")  # 401: still observed, under its route template
    after = (await client.get("/metrics")).text
    assert sample(after, "tierline_inbox_backlog") == 0.0
    assert sample(after, "tierline_inbox_oldest_pending_seconds") == 0.0
    assert processed_before == sample(
        after, "tierline_webhook_deliveries_settled_total", topic="customers/create", status="processed"
    )
    assert (
        sample(
            after,
            "tierline_http_request_duration_seconds_count",
            method="GET",
            route="/api/customers/{customer_id}",
            status="4xx",
        )
        >= 1
    )
    assert "tierline_tier_changes_total" in after or "# TYPE tierline_tier_changes_total counter" in after
    assert "tierline_webhook_processing_seconds_bucket" in after


@pytest.fixture
async def sqlite_client(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[AsyncTestClient[Litestar]]:
    database = tmp_path / "tierline.db"
    shutil.copyfile(sqlite_template, database)
    app = create_app(make_settings(f"sqlite+aiosqlite:///{database}"))
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
        yield client


def series(text: str, name: str) -> set[str]:
    """The label sets of one metric's samples in the exposition text."""
    return {
        match.group(1)
        for line in text.splitlines()
        if (match := re.fullmatch(rf"{name}\{{(.*)\}} \S+", line))
    }


def random_segment(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits + "-_.~", k=rng.randint(1, 24)))


class TestCardinality:
    """A client cannot add series: labels come from fixed sets, whatever the path, method or topic.

    Before, a path whose id was not all digits became a label of its own, so each request to a
    random path kept a new series for ever (issue 14: 30,000 requests, +131 MB, a 14 s scrape).
    """

    async def test_random_paths_and_methods_leave_the_http_series_bounded(
        self, sqlite_client: AsyncTestClient[Litestar]
    ) -> None:
        # Labels do not depend on the database: SQLite only, to keep the run short.
        client = sqlite_client
        name = "tierline_http_request_duration_seconds_count"
        rng = random.Random(14)
        await client.get("/health")
        before = series((await client.get("/metrics")).text, name)
        sent: set[str] = set()
        for _ in range(500):
            segment, other = random_segment(rng), random_segment(rng)
            sent.update((segment, other))
            await client.get(f"/api/customers/{segment}")  # 401 (no credentials), unauthenticated
            await client.get(f"/{segment}/{other}")  # matches no route: 404
            await client.get(f"/api/customers/{rng.randint(1, 2**62)}/addresses")
            await client.request(rng.choice(["PROPFIND", "BREW", segment.upper()]), "/health")
        after = series((await client.get("/metrics")).text, name)

        new = after - before
        # route, method and status class, each from a fixed set: a handful, not thousands.
        assert len(new) <= 12, sorted(new)
        routes = {re.search(r'route="([^"]*)"', labels).group(1) for labels in after}  # type: ignore[union-attr]
        assert "unmatched" in routes
        assert "/api/customers/{customer_id}" in routes
        labels = " ".join(after)
        assert not [value for value in sent if len(value) > 3 and f"/{value}" in labels]
        methods = {re.search(r'method="([^"]*)"', labels).group(1) for labels in after}  # type: ignore[union-attr]
        assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}

    async def test_random_topics_leave_the_delivery_series_bounded(
        self,
        client: AsyncTestClient[Litestar],
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
    ) -> None:
        rng = random.Random(41)
        received_before = series((await client.get("/metrics")).text, "tierline_webhook_deliveries_total")
        settled_before = series(
            (await client.get("/metrics")).text, "tierline_webhook_deliveries_settled_total"
        )
        for _ in range(150):
            topic = f"{random_segment(rng)}/{random_segment(rng)}"
            headers, body = signed_webhook(topic, {"id": next_id()})
            response = await client.post("/webhooks/shopify", content=body, headers=headers)
            assert response.status_code == 200
        # The worker settles them as ignored, reporting each topic to the metrics as the app does.
        await InboxWorker(sessionmaker, build_router(), settings, on_settled=record_settled).drain()
        text = (await client.get("/metrics")).text

        received = series(text, "tierline_webhook_deliveries_total") - received_before
        settled = series(text, "tierline_webhook_deliveries_settled_total") - settled_before
        assert received <= {'outcome="accepted",topic="other"'}
        assert settled <= {'status="ignored",topic="other"'}
        assert sample(text, "tierline_webhook_deliveries_total", topic="other", outcome="accepted") >= 150
