"""The merchant pages under ``/app``: server-rendered, embeddable in Shopify admin (docs/ui.md).

Each handler parses its query, calls the domain functions the JSON API uses and renders one
template. Pages only read: saving settings and replaying deliveries are ``fetch()`` calls from
``static/app.js`` to the JSON API, with the page's session token.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import sqlalchemy as sa
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import Controller, Request, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.ids import path_id
from service.domain import customer_views, inbox, jobs, reports, thresholds, tier_levels, writeback
from service.domain.pagination import MAX_LIMIT
from service.domain.settings import ShopSettings, get_shop_settings, to_document
from service.domain.tier_levels import DEFAULT_TIER_THRESHOLDS
from service.errors import AppError, NotFoundError, bounded_errors
from service.install import Connection, Installer
from service.runtime import Runtime
from service.types import utc_now
from service.ui.auth import (
    APP_BRIDGE_SRC,
    UNSEEN_SHOP_ID,
    PageConnectionError,
    PageContext,
    PageUnauthorizedError,
    authenticate_page,
    page_headers,
)
from service.ui.charts import month_chart, tier_chart
from service.ui.display import DEFAULT_CURRENCY, Display
from shopify_client import SessionToken

logger = logging.getLogger(__name__)

UI_DIR = Path(__file__).parent
PAGE_SIZE = 25
#: Bumped with the scripts and styles so browsers do not keep an old copy.
ASSET_VERSION = "2"
CustomerSort = Literal["ltv", "orderCount", "lastOrderAt", "name"]
SORT_LABELS = {
    "ltv": "LTV (highest first)",
    "orderCount": "Orders (most first)",
    "lastOrderAt": "Last order (newest first)",
    "name": "Name (A to Z)",
}
PERIODS = {"30d": "30 days", "90d": "90 days", "365d": "365 days", "all": "All time"}
CUSTOMER_NOT_FOUND = "no such customer"
Period = Literal["30d", "90d", "365d", "all"]


def suggestion_shares() -> str:
    """``about the top 5% Platinum, the next 10% Gold and the next 20% Silver``."""
    parts, above = [], 100
    for tier, percentile in tier_levels.PERCENTILES.items():
        parts.append(
            f"{'the top' if above == 100 else 'the next'} {above - percentile}% {tier_levels.label(tier)}"
        )
        above = percentile
    return "about " + tier_levels.spoken_list(tuple(parts), "and")


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Jinja with autoescape on (customer names are text, never markup) and strict undefined."""
    environment = Environment(
        loader=FileSystemLoader(UI_DIR / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # The tiers as the pages and the page script know them (one declaration: tier_levels).
    environment.globals.update(
        tier_levels=tuple(reversed(tier_levels.LEVELS)),
        tier_names=tier_levels.TIERS,
        threshold_tiers=tier_levels.THRESHOLD_TIERS,
        base_tier=tier_levels.BASE_TIER,
        suggestion_shares=suggestion_shares(),
        tiers_json=json.dumps([{"name": t.name, "label": t.label} for t in reversed(tier_levels.LEVELS)]),
    )
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


def static_files_router() -> Router:
    """``/app/static/app.js`` and ``app.css``."""
    return create_static_files_router(
        path="/app/static",
        directories=[UI_DIR / "static"],
        name="ui-static",
        cache_control=CacheControlHeader(max_age=300),
        include_in_schema=False,
    )


async def provide_page(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    db_session: NamedDependency[AsyncSession],
) -> PageContext:
    installer = Installer(runtime)

    async def connect(claims: SessionToken, token: str) -> Connection:
        return await installer.ensure(claims, token, page=True)

    page = await authenticate_page(db_session, runtime.settings, request.query_params, connect=connect)
    request.state.page_shop = page.shop.domain
    if page.shop.id != UNSEEN_SHOP_ID:
        page = dataclasses.replace(page, sync=await jobs.sync_view(db_session, page.shop.id))
    # Error pages keep the navigation of the shop the request was for.
    request.state.page = page
    return page


AffinityRows = list[tuple[str, int, int, Decimal]]


def affinity_tables(affinity: customer_views.Affinity) -> list[tuple[str, str, AffinityRows]]:
    """The four affinity lists as (table id, caption, rows of label, quantity, orders, spend)."""
    return [
        (
            "top-products",
            "Top products",
            [
                (p.title or f"Product {p.product_id}", p.quantity, p.orders, p.spend)
                for p in affinity.top_products
            ],
        ),
        (
            "top-variants",
            "Top variants",
            [
                (
                    " / ".join(x for x in (v.title, v.variant_title) if x) or f"Variant {v.variant_id}",
                    v.quantity,
                    v.orders,
                    v.spend,
                )
                for v in affinity.top_variants
            ],
        ),
        (
            "top-option-values",
            "Top option values",
            [(o.value, o.quantity, o.orders, o.spend) for o in affinity.top_option_values],
        ),
        (
            "top-vendors",
            "Top vendors",
            [(v.value, v.quantity, v.orders, v.spend) for v in affinity.top_vendors],
        ),
    ]


def default_thresholds_note(page: PageContext, settings: ShopSettings) -> str | None:
    """A warning when the shop still has the default thresholds, which are rupee amounts, and
    sells in another currency (docs/ui.md, "Thresholds and the shop's currency")."""
    currency = (page.shop.currency or DEFAULT_CURRENCY).upper()
    if currency == DEFAULT_CURRENCY or settings.tier_thresholds != DEFAULT_TIER_THRESHOLDS:
        return None
    return (
        f"These are the default thresholds, which were chosen for rupee amounts; this shop sells in "
        f"{currency}. Check them against your customers' LTVs: the suggestion below draws them "
        "from your own customers."
    )


def render(
    template: str, page: PageContext, *, title: str, section: str, status_code: int = 200, **context: Any
) -> Template:
    fmt = Display.for_shop(page.shop.currency, page.shop.iana_timezone)
    return Template(
        template_name=template,
        context={
            "page": page,
            "fmt": fmt,
            "title": title,
            "section": section,
            "app_bridge_src": APP_BRIDGE_SRC,
            "asset_version": ASSET_VERSION,
            **context,
        },
        headers=page_headers(page.shop.domain),
        status_code=status_code,
    )


@dataclass(frozen=True, slots=True)
class ErrorCopy:
    """What an error page says: a title, what happened in plain words, and what to do next."""

    title: str
    explanation: str
    next_step: str


def error_copy(status: int, detail: str) -> ErrorCopy:
    if status == 401:
        return ErrorCopy(
            "Sign-in needed",
            "tierline could not confirm which shop this page is for.",
            "Open tierline from the Apps section of your Shopify admin.",
        )
    if status == 404:
        if detail == CUSTOMER_NOT_FOUND:
            return ErrorCopy(
                "Customer not found",
                "This shop has no customer with that id: the link may be old, or the customer was "
                "deleted or erased at their request.",
                "Find them in the customer list.",
            )
        return ErrorCopy(
            "Page not found", "tierline has no page at this address.", "Go to one of the pages above."
        )
    if status in (400, 422):
        return ErrorCopy(
            "This link is not valid",
            "Part of the address (a filter, a sort or a page link) is not one tierline understands: "
            f"{detail}.",
            "Start again from the customer list.",
        )
    if status == 503:
        return ErrorCopy(
            "tierline is busy",
            "Its database did not answer in time. Nothing was lost.",
            "Try again in a minute.",
        )
    return ErrorCopy(
        "Something went wrong",
        "tierline hit an unexpected error. It has been logged for the team that runs it.",
        "Try again; if it keeps happening, contact the app's support.",
    )


def _error_page(request: Request[Any, Any, Any], status: int, detail: str, exc: Exception) -> Template:
    bounce_shop = exc.shop if isinstance(exc, PageUnauthorizedError) else None
    bounce_host = exc.host if isinstance(exc, PageUnauthorizedError) else None
    connect = exc if isinstance(exc, PageConnectionError) else None
    frame_shop = (
        getattr(request.state, "page_shop", None) or bounce_shop or (connect.shop if connect else None)
    )
    page: PageContext | None = getattr(request.state, "page", None)
    runtime: Runtime = request.app.state.runtime
    copy = error_copy(status, detail)
    fmt = Display.for_shop(page.shop.currency, page.shop.iana_timezone) if page is not None else None
    retry_url = str(request.url) if status in (500, 503) else None
    if connect is not None:
        retry_url = (
            request.url.path
            + "?"
            + urlencode({"shop": connect.shop, **({"host": connect.host} if connect.host else {})})
        )
    return Template(
        template_name="error.html",
        context={
            "page": page,
            "fmt": fmt,
            "title": "Connecting tierline to your shop" if connect is not None else copy.title,
            "copy": copy,
            "status": status,
            "detail": detail,
            "bounce": bounce_shop is not None and bounce_host is not None,
            "connect": connect.connection if connect else None,
            "connect_shop": connect.shop if connect else None,
            "connect_token": connect.id_token if connect else None,
            "retry_url": retry_url,
            "api_key": runtime.settings.shopify_api_key,
            "app_bridge_src": APP_BRIDGE_SRC,
            "asset_version": ASSET_VERSION,
            "section": "",
        },
        headers=page_headers(frame_shop),
        status_code=status,
    )


def _app_error(request: Request[Any, Any, Any], exc: AppError) -> Template:
    detail = exc.detail
    if exc.errors:
        detail += ": " + "; ".join(f"{e['field']}: {e['message']}" for e in bounded_errors(exc.errors))
    return _error_page(request, exc.status_code, detail, exc)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Template:
    detail = exc.detail or "invalid request"
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        fields = [str(e.get("key") or "") for e in exc.extra if isinstance(e, dict)]
        detail = "invalid " + ", ".join(f for f in fields if f) if any(fields) else detail
    return _error_page(request, exc.status_code, detail, exc)


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Template:
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) or (
        isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
    ):
        logger.error("ui.database_unavailable", extra={"path": request.url.path, "error": type(exc).__name__})
        return _error_page(request, 503, "the database is unavailable", exc)
    logger.exception("ui.unhandled_error", extra={"path": request.url.path})
    return _error_page(request, 500, "An unexpected error occurred; it has been logged.", exc)


@get("/", include_in_schema=False)
async def app_root(request: Request[Any, Any, Any]) -> Redirect:
    """The app URL Shopify admin opens (``application_url``, an origin): on to ``/app``, query kept."""
    query = request.url.query
    return Redirect(path="/app" + (f"?{query}" if query else ""), status_code=302)


class PageController(Controller):
    path = "/app"
    include_in_schema = False
    dependencies = {"page": Provide(provide_page)}
    exception_handlers = {AppError: _app_error, HTTPException: _http_error, Exception: _internal_error}

    @get("/", name="ui-customers")
    async def customers(
        self,
        db_session: NamedDependency[AsyncSession],
        page: NamedDependency[PageContext],
        tier: Annotated[str | None, QueryParameter(max_length=100)] = None,
        search: Annotated[str | None, QueryParameter(max_length=customer_views.MAX_SEARCH_LENGTH)] = None,
        sort: FromQuery[CustomerSort] = "ltv",
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = PAGE_SIZE,
        cursor: Annotated[str | None, QueryParameter(max_length=2000)] = None,
    ) -> Template:
        tiers = customer_views.parse_tiers(tier)
        settings = await get_shop_settings(db_session, page.shop.id)
        items, next_cursor = await customer_views.list_customers(
            db_session,
            page.shop.id,
            settings,
            tiers=tiers,
            search=search,
            sort=sort,
            limit=limit,
            cursor=cursor,
        )
        counts = await reports.tier_counts(db_session, page.shop.id, settings)
        return render(
            "customers.html",
            page,
            title="Customers",
            section="customers",
            customers=items,
            counts=counts,
            total=sum(counts.values()),
            tier=",".join(tiers),
            search=customer_views.normalize_search(search) or "",
            sort=sort,
            sort_labels=SORT_LABELS,
            limit_param=None if limit == PAGE_SIZE else limit,
            cursor=cursor,
            next_cursor=next_cursor,
            default_thresholds_note=default_thresholds_note(page, settings),
        )

    @get("/customers/{customer_id:str}", name="ui-customer")
    async def customer(
        self,
        db_session: NamedDependency[AsyncSession],
        page: NamedDependency[PageContext],
        customer_id: FromPath[str],
    ) -> Template:
        numeric = path_id(customer_id, "Customer")
        settings = await get_shop_settings(db_session, page.shop.id)
        profile = await customer_views.customer_profile(
            db_session, page.shop.id, numeric, settings, now=utc_now()
        )
        addresses = await customer_views.customer_addresses(db_session, page.shop.id, numeric, settings)
        if profile is None or addresses is None:
            raise NotFoundError(CUSTOMER_NOT_FOUND)
        summary = profile.summary
        name = Display.name(summary.first_name, summary.last_name, summary.email, summary.id)
        return render(
            "customer.html",
            page,
            title=name,
            section="customers",
            name=name,
            profile=profile,
            affinity=affinity_tables(profile.affinity),
            addresses=addresses,
        )

    @get("/overview", name="ui-overview")
    async def overview(
        self,
        db_session: NamedDependency[AsyncSession],
        page: NamedDependency[PageContext],
        period: FromQuery[Period] = "all",
    ) -> Template:
        now = utc_now()
        settings = await get_shop_settings(db_session, page.shop.id)
        found = await reports.overview(db_session, page.shop.id, settings, now=now)
        window = reports.report_window(period, None, None, now=now)
        top = await reports.top_customers(
            db_session, page.shop.id, settings, window, reports.DEFAULT_TOP_CUSTOMERS
        )
        fmt = Display.for_shop(page.shop.currency, page.shop.iana_timezone)
        months = await reports.monthly_ltv(db_session, page.shop.id, settings, now=now, zone=fmt.zone)
        return render(
            "overview.html",
            page,
            title="Top customers and overview",
            section="overview",
            overview=found,
            top=top,
            period=period,
            periods=PERIODS,
            tier_chart=tier_chart(found.tiers, fmt),
            month_chart=month_chart(months, fmt),
            months=months,
        )

    @get("/settings", name="ui-settings")
    async def settings(
        self, db_session: NamedDependency[AsyncSession], page: NamedDependency[PageContext]
    ) -> Template:
        settings = await get_shop_settings(db_session, page.shop.id)
        counts = await reports.tier_counts(db_session, page.shop.id, settings)
        suggestion: thresholds.Suggestion | None
        try:
            suggestion = await thresholds.suggest_thresholds(db_session, page.shop.id, settings)
        except thresholds.NoSuggestionError:
            suggestion = None
        return render(
            "settings.html",
            page,
            title="Settings",
            section="settings",
            document=to_document(settings),
            thresholds=settings.tier_thresholds,
            gateway_text="\n".join(settings.cod_gateways),
            rto_text="\n".join(f"{tag} = {state}" for tag, state in settings.rto_tags.items()),
            counts=counts,
            suggestion=suggestion,
            default_thresholds_note=default_thresholds_note(page, settings),
        )

    @get("/{rest:path}", name="ui-not-found")
    async def not_found(self, page: NamedDependency[PageContext], rest: FromPath[str]) -> Template:
        """Any other address under ``/app``: an HTML 404 with the shop's navigation."""
        raise NotFoundError(f"no page {rest[:100]!r}")

    @get("/deliveries", name="ui-deliveries")
    async def deliveries(
        self,
        db_session: NamedDependency[AsyncSession],
        page: NamedDependency[PageContext],
        failed_cursor: Annotated[str | None, QueryParameter(max_length=2000)] = None,
        dead_cursor: Annotated[str | None, QueryParameter(max_length=2000)] = None,
    ) -> Template:
        groups = []
        for status, cursor in (("failed", failed_cursor), ("dead", dead_cursor)):
            rows, next_cursor = await inbox.list_deliveries(
                db_session, shop_id=page.shop.id, status=status, topic=None, limit=PAGE_SIZE, cursor=cursor
            )
            groups.append({"status": status, "rows": rows, "next_cursor": next_cursor, "cursor": cursor})
        write_backs = await writeback.failed_rows(db_session, page.shop.id)
        return render(
            "deliveries.html",
            page,
            title="Deliveries",
            section="deliveries",
            groups=groups,
            write_backs=write_backs,
        )
