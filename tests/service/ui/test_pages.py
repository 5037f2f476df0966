"""The merchant pages under ``/app`` over HTTP, on SQLite and PostgreSQL (docs/ui.md).

Data comes through the real pipeline (inbox + worker). Pages are rendered in development for the
test shop (``TIERLINE_DEV_SHOP``), or in production with App Bridge session tokens.
"""

from __future__ import annotations

import html
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.config import Settings
from service.db import session_scope
from service.ui.auth import dev_session_token
from tests.conftest import make_settings
from tests.support import deliveries as helpers
from tests.support.api import days_ago, delivered_fulfillment, now, order, send
from tests.support.deliveries import Delivery, Sessionmaker
from tests.support.payloads import (
    API_KEY,
    API_SECRET,
    COD,
    OTHER_SHOP,
    SHOP,
    customer_payload,
    next_id,
)

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

Client = AsyncTestClient[Litestar]
PAGES = ("/app", "/app/overview", "/app/settings", "/app/deliveries")
XSS = "<script>alert(1)</script>"
CSP_DEV = f"frame-ancestors https://{SHOP} https://admin.shopify.com"


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Development settings whose development shop is the test shop."""
    return make_settings(database_url, TIERLINE_DEV_SHOP=SHOP)


# --- helpers -----------------------------------------------------------------------------------


class _Tables(HTMLParser):
    """Cell texts of each table's body rows, by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._in_body = False
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or f"table-{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            # Text of separate elements (a name and the email under it) is separated by a space.
            self._row.append(" ".join(" ".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table(page: str, table_id: str) -> list[list[str]]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables[table_id]


def names(page: str, table_id: str = "customers") -> list[str]:
    """The customers' names in a table: the text of the link in each row's first cell."""
    block = page[page.index(f'<table class="data" id="{table_id}">') :]
    block = block[: block.index("</table>")]
    return [html.unescape(n) for n in re.findall(r'<th scope="row"[^>]*><a href="[^"]*">([^<]*)</a>', block)]


def link(page: str, text: str) -> str:
    """The (unescaped) href of the first link with this text."""
    found = re.search(r'<a[^>]*href="([^"]*)"[^>]*>' + re.escape(text) + "</a>", page)
    assert found, f"no link {text!r}"
    return html.unescape(found.group(1))


def session_token(shop: str = SHOP, *, secret: str = API_SECRET, expires_in: int = 60) -> str:
    issued = int(time.time())
    claims = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": API_KEY,
        "sub": "42",
        "exp": issued + expires_in,
        "nbf": issued - 5,
        "iat": issued - 5,
        "jti": str(uuid.uuid4()),
        "sid": "session-1",
    }
    return jwt.encode(claims, secret, algorithm="HS256")


async def get_page(client: Client, url: str, status: int = 200, **params: Any) -> str:
    response = await client.get(url, params=params or None)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text


async def set_shop(sessionmaker: Sessionmaker, **values: Any) -> None:
    async with session_scope(sessionmaker) as session:
        await session.execute(sa.update(helpers.SHOPS).where(helpers.SHOPS.c.domain == SHOP).values(**values))


def customer(cid: int, first: str, last: str) -> Delivery:
    payload = customer_payload(cid, first_name=first, last_name=last, email=f"c{cid}@example.com", phone=None)
    return Delivery.of("customers/create", payload)


@dataclass(frozen=True, slots=True)
class Seed:
    ids: dict[str, int]
    orders: list[tuple[datetime, Decimal]]
    evening: datetime
    failed: int
    dead: int
    delivered: int


@pytest.fixture
async def seed(sessionmaker: Sessionmaker, settings: Settings) -> Seed:
    """Four customers, one per tier (default thresholds), a COD RTO, a delivered order, and a
    failed and a dead delivery."""
    base = now()
    ids = {name: next_id() for name in ("priya", "arjun", "ravi", "xss")}
    evening = (base - timedelta(days=10)).replace(hour=20, minute=0, second=0, microsecond=0)
    t_priya, t_ravi, t_rto, t_xss = (
        days_ago(40, base),
        days_ago(5, base),
        days_ago(3, base),
        days_ago(2, base),
    )
    delivered = next_id()
    await send(
        sessionmaker,
        settings,
        [
            customer(ids["priya"], "Priya", "Sharma"),
            customer(ids["arjun"], "Arjun", "Mehta"),
            customer(ids["ravi"], "Ravi", "Kumar"),
            customer(ids["xss"], XSS, "Evil"),
            # Delivered by its fulfillment after creation (tier triggers never fire on creation).
            order(delivered, ids["priya"], "60000.00", t_priya, fulfillment_status="fulfilled"),
            Delivery.of("fulfillments/create", delivered_fulfillment(delivered, t_priya)),
            order(next_id(), ids["arjun"], "30000.00", evening),
            order(next_id(), ids["ravi"], "12000.00", t_ravi, gateways=COD),
            order(next_id(), ids["ravi"], "800.00", t_rto, gateways=COD, tags="rto"),
            order(next_id(), ids["xss"], "999.00", t_xss),
        ],
    )
    failed = await helpers.enqueue(sessionmaker, "orders/create", body=b"{not json")
    await helpers.drain(sessionmaker, settings)
    dead = await helpers.enqueue(sessionmaker, "orders/updated", {"id": 1})
    await helpers.update_delivery(
        sessionmaker, dead, status="dead", attempts=8, last_error="gave up after 8 tries"
    )
    assert (await helpers.delivery(sessionmaker, failed))["status"] == "failed"
    orders = [
        (t_priya, Decimal("60000.00")),
        (evening, Decimal("30000.00")),
        (t_ravi, Decimal("12000.00")),
        (t_xss, Decimal("999.00")),
    ]
    return Seed(ids=ids, orders=orders, evening=evening, failed=failed, dead=dead, delivered=delivered)


# --- customers ---------------------------------------------------------------------------------


class TestCustomers:
    async def test_figures_tiers_and_rto(self, client: Client, seed: Seed) -> None:
        page = await get_page(client, "/app")
        rows = table(page, "customers")
        assert [(name, r[2], r[3], r[4], r[5]) for name, r in zip(names(page), rows, strict=True)] == [
            ("Priya Sharma", "Platinum", "₹60,000.00", "1", "0"),
            ("Arjun Mehta", "Gold", "₹30,000.00", "1", "0"),
            ("Ravi Kumar", "Silver", "₹12,000.00", "1", "1"),
            (f"{XSS} Evil", "Bronze", "₹999.00", "1", "0"),
        ]
        # The email is under the name, not a column of its own.
        assert rows[0][0] == f"Priya Sharma c{seed.ids['priya']}@example.com"
        chips = re.findall(r'class="chip[^"]*"[^>]*>([A-Za-z]+) <span class="count">(\d+)</span>', page)
        assert chips == [("All", "4"), ("Platinum", "1"), ("Gold", "1"), ("Silver", "1"), ("Bronze", "1")]

    async def test_tier_filter_search_and_sort(self, client: Client, seed: Seed) -> None:
        silver = await get_page(client, "/app", tier="silver")
        assert names(silver) == ["Ravi Kumar"]
        assert re.search(r'data-tier="silver" href="[^"]*" aria-current="true"', silver)
        found = await get_page(client, "/app", search="  mehta ")
        assert names(found) == ["Arjun Mehta"]
        by_name = await get_page(client, "/app", sort="name")
        listed = names(by_name)
        assert listed.index("Arjun Mehta") < listed.index("Priya Sharma") < listed.index("Ravi Kumar")
        nothing = await get_page(client, "/app", search="nobody-like-this")
        assert table(nothing, "customers") == [["No customers match these filters."]]

    async def test_pagination_follows_next_links(self, client: Client, seed: Seed) -> None:
        first = await get_page(client, "/app", limit=3)
        assert names(first) == ["Priya Sharma", "Arjun Mehta", "Ravi Kumar"]
        second = await get_page(client, link(first, "Next page"))
        assert names(second) == [f"{XSS} Evil"]
        assert "Next page" not in second
        assert link(second, "First page") == "/app?sort=ltv&limit=3"

    async def test_currency_and_time_zone_of_the_shop(
        self, client: Client, sessionmaker: Sessionmaker, seed: Seed
    ) -> None:
        await set_shop(sessionmaker, currency="USD", iana_timezone="Asia/Kolkata")
        page = await get_page(client, "/app", tier="gold")
        (row,) = table(page, "customers")
        local = seed.evening + timedelta(hours=5, minutes=30)  # 20:00 UTC is 01:30 next day in India
        assert row[3] == "$30,000.00"
        # The last order is a date on one line; the time is its tooltip.
        assert row[6] == f"{local.day} {local:%b %Y}"
        assert f'title="{local.day} {local:%b %Y}, 01:30 IST">{local.day} {local:%b %Y}</time>' in page

    async def test_unknown_currency_code_and_time_zone(
        self, client: Client, sessionmaker: Sessionmaker, seed: Seed
    ) -> None:
        await set_shop(sessionmaker, currency="XYZ", iana_timezone="Not/AZone")
        page = await get_page(client, "/app", tier="gold")
        (row,) = table(page, "customers")
        assert row[3] == "30,000.00 XYZ"
        assert row[6] == f"{seed.evening.day} {seed.evening:%b %Y}"
        assert f'title="{seed.evening.day} {seed.evening:%b %Y}, 20:00 UTC"' in page

    async def test_bad_query_is_an_html_error(self, client: Client, seed: Seed) -> None:
        page = await get_page(client, "/app", 422, tier="diamond")
        assert "<h1>This link is not valid</h1>" in page
        assert "unknown tier &#39;diamond&#39;: use platinum, gold, silver or bronze" in page
        assert link(page, "Go to the customer list") == "/app"
        page = await get_page(client, "/app", 400, cursor="not-a-cursor")
        assert "cursor" in page
        assert link(page, "Customers") == "/app"  # the navigation is there


# --- one customer --------------------------------------------------------------------------------


class TestCustomer:
    async def test_stats_tier_of_record_affinity_orders_addresses(self, client: Client, seed: Seed) -> None:
        page = await get_page(client, f"/app/customers/{seed.ids['priya']}")
        assert re.search(r'<dd id="stat-ltv">₹60,000.00</dd>', page)
        assert re.search(r'<dd id="stat-orders">1</dd>', page)
        assert 'Tier of record: <span class="tier tier-platinum">Platinum</span>' in page
        history = table(page, "tier-history")
        name = f"#{1000 + seed.delivered % 100000}"
        assert [r[1:] for r in history] == [
            ["none → Platinum", "₹60,000.00", f"Order delivered: order {name}"]
        ]
        assert ["Cotton Kurta", "1", "1", "₹60,000.00"] in table(page, "top-products")
        (recent,) = table(page, "recent-orders")
        assert recent[0] == name
        assert recent[2:6] == ["₹60,000.00", "Prepaid", "Payment pending", "Delivered"]
        assert "12 MG Road" in page
        assert "Bengaluru, Karnataka, 560001" in page

    async def test_rto_customer(self, client: Client, seed: Seed) -> None:
        page = await get_page(client, f"/app/customers/{seed.ids['ravi']}")
        assert '<dd id="stat-rto">1</dd>' in page
        statuses = [r[5] for r in table(page, "recent-orders")]
        assert statuses == ["RTO initiated", "Not shipped"]

    async def test_unknown_customer_is_404(self, client: Client, seed: Seed) -> None:
        page = await get_page(client, "/app/customers/123", 404)
        assert "<h1>Customer not found</h1>" in page
        assert "no such customer" in page
        assert link(page, "Go to the customer list") == "/app"
        assert link(page, "Settings") == "/app/settings"
        await get_page(client, "/app/customers/abc", 404)

    async def test_any_other_address_is_an_html_404_with_navigation(self, client: Client, seed: Seed) -> None:
        page = await get_page(client, "/app/no/such/page", 404)
        assert "<h1>Page not found</h1>" in page
        assert link(page, "Deliveries") == "/app/deliveries"


# --- overview, settings, deliveries --------------------------------------------------------------


class TestOverview:
    async def test_figures_charts_and_top_customers(self, client: Client, seed: Seed) -> None:
        page = await get_page(client, "/app/overview")
        assert "<dt>Customers</dt><dd>4</dd>" in page
        assert "Customers by tier: Platinum 1, Gold 1, Silver 1, Bronze 1" in page
        assert page.count('<rect class="bar-month"') == 12
        # The month chart has a y axis (five gridlines with amounts), a value on every column, and
        # the year under the first month.
        chart = page[page.index('id="month-chart"') : page.index("</svg>", page.index('id="month-chart"'))]
        assert chart.count('<line class="grid"') == 5
        assert chart.count('<text class="value"') == 12
        assert re.search(r'<text class="axis"[^>]*>0</text>', chart)
        today = now()
        first_year = (today.year * 12 + today.month - 1 - 11) // 12  # the month 11 months back
        assert re.search(rf'<text class="axis"[^>]*>{first_year}</text>', chart)
        expected: dict[str, Decimal] = {}
        for created, amount in seed.orders:
            key = f"{created.astimezone(UTC):%B %Y}"
            expected[key] = expected.get(key, Decimal(0)) + amount
        months = {r[0]: r[1] for r in table(page, "months") if r[1] != "₹0.00"}
        assert months == {k: f"₹{v:,.2f}" for k, v in expected.items()}
        top = table(page, "top-customers")
        assert [(n, r[3]) for n, r in zip(names(page, "top-customers"), top, strict=True)] == [
            ("Priya Sharma", "₹60,000.00"),
            ("Arjun Mehta", "₹30,000.00"),
            ("Ravi Kumar", "₹12,000.00"),
            (f"{XSS} Evil", "₹999.00"),
        ]
        recent = await get_page(client, "/app/overview", period="30d")
        assert names(recent, "top-customers")[0] == "Arjun Mehta"
        # What they buy most is under the name (one column fewer for narrow admin frames).
        assert top[0][1] == "Priya Sharma Cotton Kurta"


class TestSettings:
    async def test_form_shows_current_values(
        self, client: Client, sessionmaker: Sessionmaker, seed: Seed
    ) -> None:
        await helpers.set_shop_settings(
            sessionmaker, {"tierThresholds": {"platinum": "900.00", "gold": "500.00", "silver": "100.00"}}
        )
        page = await get_page(client, "/app/settings")
        assert 'id="threshold-gold" name="gold" data-field="tierThresholds.gold"' in page
        assert 'value="500.00"' in page
        assert "Cash on Delivery (COD)\ncash_on_delivery\ncod</textarea>" in page
        assert "rto-in-transit = rto_in_transit" in page
        assert [r[:2] for r in table(page, "tier-counts")] == [
            ["Platinum", "4"],
            ["Gold", "0"],
            ["Silver", "0"],
            ["Bronze", "0"],
        ]
        for field in ("threshold-platinum", "cod-gateways", "rto-tags", "include-test"):
            assert f'<label for="{field}">' in page

    async def test_suggested_thresholds_with_a_preview(self, client: Client, seed: Seed) -> None:
        """LTVs of the four buyers: 999, 12,000, 30,000, 60,000 (the RTO order counts nowhere).
        95th and 85th percentiles (rank 4 of 4): 60,000, so gold becomes the next lower amount,
        59,000; 65th (rank 3): 30,000. Then: Priya platinum, Arjun silver, Ravi and the last bronze."""
        page = await get_page(client, "/app/settings")
        assert table(page, "suggestion-preview") == [
            ["Platinum", "₹50,000.00", "1", "₹60,000.00", "1"],
            ["Gold", "₹25,000.00", "1", "₹59,000.00", "0"],
            ["Silver", "₹10,000.00", "1", "₹30,000.00", "1"],
            ["Bronze", "below Silver", "1", "below Silver", "2"],
        ]
        assert 'data-suggested="59000.00"' in page
        assert 'id="use-suggestion"' in page
        assert "thresholds-note" not in page  # an INR shop: the defaults are rupee amounts

    async def test_no_suggestion_before_any_order(self, client: Client) -> None:
        page = await get_page(client, "/app/settings")
        assert 'id="no-suggestion"' in page
        assert "suggestion-preview" not in page

    async def test_rupee_defaults_in_another_currency_are_pointed_out(
        self, client: Client, sessionmaker: Sessionmaker, seed: Seed
    ) -> None:
        await set_shop(sessionmaker, currency="IDR")
        for url in ("/app", "/app/settings"):
            page = await get_page(client, url)
            assert 'id="thresholds-note"' in page, url
            assert "chosen for rupee amounts; this shop sells in IDR" in page
        await helpers.set_shop_settings(
            sessionmaker, {"tierThresholds": {"platinum": "5000000", "gold": "2000000", "silver": "500000"}}
        )
        assert 'id="thresholds-note"' not in await get_page(client, "/app")


class TestDeliveries:
    async def test_failed_and_dead_with_reason_and_replay(self, client: Client, seed: Seed) -> None:
        page = await get_page(client, "/app/deliveries")
        (failed,) = table(page, "deliveries-failed")
        assert failed[1:4] == ["orders/create", "failed", "once, not retried"]
        assert failed[4]
        (dead,) = table(page, "deliveries-dead")
        assert dead[1:5] == ["orders/updated", "dead", "8 times", "gave up after 8 tries"]
        assert f'data-replay="{seed.failed}"' in page
        assert f'data-replay="{seed.dead}"' in page


# --- security ------------------------------------------------------------------------------------


class TestEscapingAndHeaders:
    async def test_html_in_names_renders_as_text(self, client: Client, seed: Seed) -> None:
        for url in ("/app", f"/app/customers/{seed.ids['xss']}", "/app/overview"):
            page = await get_page(client, url)
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
            assert "<script>alert" not in page

    async def test_csp_and_no_inline_script(self, client: Client, seed: Seed) -> None:
        for url in (*PAGES, f"/app/customers/{seed.ids['priya']}", "/app/customers/1"):
            response = await client.get(url)
            assert response.headers["content-security-policy"].startswith(CSP_DEV + ";"), url
            assert (
                "script-src 'self' https://cdn.shopify.com/shopifycloud/app-bridge.js"
                in (response.headers["content-security-policy"])
            )
            assert response.headers["cache-control"] == "no-store"
            assert "x-frame-options" not in response.headers
            assert not re.search(r"\son[a-z]+\s*=", response.text), url
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", response.text), url
            assert '<html lang="en">' in response.text
            assert '<main id="main"' in response.text

    async def test_dev_page_token_works_with_the_json_api(self, client: Client, seed: Seed) -> None:
        page = await get_page(client, "/app/settings")
        token = re.search(r'<meta name="tierline-dev-token" content="([^"]+)">', page)
        assert token is not None
        assert 'app-bridge.js"></script>' not in page  # outside the admin: no App Bridge
        headers = {"Authorization": f"Bearer {token.group(1)}"}
        assert (await client.get("/api/settings", headers=headers)).status_code == 200
        bad = await client.put(
            "/api/settings",
            headers=headers,
            json={"tierThresholds": {"platinum": "1", "gold": "2", "silver": "x"}},
        )
        assert bad.status_code == 422
        assert {e["field"] for e in bad.json()["errors"]} == {"tierThresholds.silver"}

    async def test_static_files_and_root_redirect(self, client: Client) -> None:
        script = await client.get("/app/static/app.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        assert (await client.get("/app/static/app.css")).status_code == 200
        root = await client.get("/", params={"shop": SHOP, "host": "abc"}, follow_redirects=False)
        assert root.status_code == 302
        assert root.headers["location"] == f"/app?shop={SHOP}&host=abc"


# --- production: session tokens only --------------------------------------------------------------


@pytest.fixture
async def production(database_url: str) -> AsyncIterator[Client]:
    settings = make_settings(
        database_url,
        TIERLINE_ENV="production",
        TIERLINE_DEV_SHOP=SHOP,
        SHOPIFY_APP_URL="https://tierline.example",
    )
    async with AsyncTestClient(app=create_app(settings), base_url="https://tierline.example") as client:
        yield client


class TestProduction:
    async def test_no_token_is_401_without_a_dev_fallback(self, production: Client) -> None:
        for url in (*PAGES, "/app/customers/1"):
            response = await production.get(url)
            assert response.status_code == 401, url
            assert "tierline-dev-token" not in response.text
            assert response.headers["content-security-policy"].startswith("frame-ancestors 'none';")

    async def test_invalid_tokens_are_401(self, production: Client) -> None:
        expired = session_token(expires_in=-60)
        for token in ("garbage", session_token(secret="another-secret-0123456789abcdef"), expired):
            response = await production.get("/app", params={"id_token": token})
            assert response.status_code == 401
            assert "tierline-dev-token" not in response.text

    async def test_valid_token_renders_the_embedded_page(
        self, production: Client, sessionmaker: Sessionmaker, settings: Settings, seed: Seed
    ) -> None:
        response = await production.get(
            "/app", params={"id_token": session_token(), "shop": SHOP, "host": "aG9zdA"}
        )
        assert response.status_code == 200, response.text
        page = response.text
        assert response.headers["content-security-policy"].startswith(CSP_DEV + ";")
        assert f'<meta name="shopify-api-key" content="{API_KEY}">' in page
        assert '<script src="https://cdn.shopify.com/shopifycloud/app-bridge.js"></script>' in page
        assert "tierline-dev-token" not in page
        assert names(page)[0] == "Priya Sharma"
        # Links keep the embedded context (App Bridge adds a fresh id_token on navigation).
        assert link(page, "Settings") == f"/app/settings?shop={SHOP}&host=aG9zdA"

    async def test_missing_token_inside_the_admin_gets_the_bounce_page(self, production: Client) -> None:
        response = await production.get("/app/settings", params={"shop": SHOP, "host": "aG9zdA"})
        assert response.status_code == 401
        assert 'id="bounce"' in response.text
        assert "app-bridge.js" in response.text
        assert response.headers["content-security-policy"].startswith(CSP_DEV + ";")

    async def test_token_of_another_shop_than_named_is_401(self, production: Client) -> None:
        response = await production.get("/app", params={"id_token": session_token(OTHER_SHOP), "shop": SHOP})
        assert response.status_code == 401

    async def test_uninstalled_shop_whose_reinstall_fails_sees_why_and_a_retry_not_its_data(
        self, production: Client, sessionmaker: Sessionmaker, seed: Seed
    ) -> None:
        await set_shop(sessionmaker, uninstalled_at=datetime.now(UTC))
        # The token exchange cannot reach Shopify here (tests have no network).
        response = await production.get("/app", params={"id_token": session_token(), "host": "YWRtaW4"})
        assert response.status_code == 502
        assert "tierline could not connect to your shop" in response.text
        assert "Shopify could not be reached" in response.text
        assert link(response.text, "Try again") == f"/?shop={SHOP}&host=YWRtaW4".replace("/?", "/app?")
        assert "Priya" not in response.text
        without_token = await production.get("/app", params={"shop": SHOP})
        assert without_token.status_code == 401

    @pytest.mark.parametrize(
        "shop", ["shopa.my\u017fhopify.com", "\u0130nk.myshopify.com", "\u212aite.myshopify.com", "evil.com"]
    )
    async def test_a_shop_parameter_that_is_not_a_shop_domain_is_a_400_page(
        self, production: Client, shop: str
    ) -> None:
        # Non-ASCII look-alikes once passed the check and then broke the response headers (500).
        for params in ({"shop": shop}, {"shop": shop, "host": "aG9zdA"}, {"shop": shop, "id_token": "x"}):
            response = await production.get("/app", params=params)
            assert response.status_code == 400, params
            assert response.headers["content-type"].startswith("text/html")
            assert "not a *.myshopify.com domain" in html.unescape(response.text)
            assert response.headers["content-security-policy"].startswith("frame-ancestors 'none';")

    async def test_dev_tokens_are_never_minted_in_production(self, database_url: str) -> None:
        settings = make_settings(database_url, TIERLINE_ENV="production")
        with pytest.raises(RuntimeError, match="never issued in production"):
            dev_session_token(settings)


async def test_development_also_refuses_a_look_alike_shop_parameter(client: Client) -> None:
    response = await client.get("/app", params={"shop": "shopa.my\u017fhopify.com"})
    assert response.status_code == 400
    assert "tierline-dev-token" not in response.text


async def test_unseen_shop_renders_empty_pages(client: Client) -> None:
    for url in PAGES:
        await get_page(client, url)
    page = await get_page(client, "/app")
    assert table(page, "customers") == [["No customers yet: they appear as Shopify sends orders."]]
