"""The merchant pages under ``/app``: server-rendered, embeddable in Shopify admin (docs/ui.md).

Each handler parses its query, calls the domain functions the JSON API uses and renders one
template. Pages only read: saving settings and replaying deliveries are ``fetch()`` calls from
``static/app.js`` to the JSON API, with the page's session token.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import Controller, Request, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.ids import path_id
from service.domain import customer_views, inbox, reports
from service.domain.pagination import MAX_LIMIT
from service.domain.settings import get_shop_settings, to_document
from service.errors import AppError, NotFoundError, bounded_errors
from service.runtime import Runtime
from service.types import utc_now
from service.ui.auth import (
    APP_BRIDGE_SRC,
    PageContext,
    PageUnauthorizedError,
    authenticate_page,
    page_headers,
)
from service.ui.charts import month_chart, tier_chart
from service.ui.display import Display

logger = logging.getLogger(__name__)

UI_DIR = Path(__file__).parent
PAGE_SIZE = 25
#: Bumped with the scripts and styles so browsers do not keep an old copy.
ASSET_VERSION = "1"
CustomerSort = Literal["ltv", "orderCount", "lastOrderAt", "name"]
SORT_LABELS = {
    "ltv": "LTV (highest first)",
    "orderCount": "Orders (most first)",
    "lastOrderAt": "Last order (newest first)",
    "name": "Name (A to Z)",
}
PERIODS = {"30d": "30 days", "90d": "90 days", "365d": "365 days", "all": "All time"}
Period = Literal["30d", "90d", "365d", "all"]


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Jinja with autoescape on (customer names are text, never markup) and strict undefined."""
    environment = Environment(
        loader=FileSystemLoader(UI_DIR / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
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
    page = await authenticate_page(db_session, runtime.settings, request.query_params)
    request.state.page_shop = page.shop.domain
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


def _error_page(request: Request[Any, Any, Any], status: int, detail: str, exc: Exception) -> Template:
    bounce_shop = exc.shop if isinstance(exc, PageUnauthorizedError) else None
    bounce_host = exc.host if isinstance(exc, PageUnauthorizedError) else None
    frame_shop = getattr(request.state, "page_shop", None) or bounce_shop
    runtime: Runtime = request.app.state.runtime
    return Template(
        template_name="error.html",
        context={
            "page": None,
            "title": "Sign-in needed" if status == 401 else "Something is not right",
            "status": status,
            "detail": detail,
            "bounce": bounce_shop is not None and bounce_host is not None,
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
    return _error_page(request, exc.status_code, exc.detail or "invalid request", exc)


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Template:
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
            raise NotFoundError("no such customer")
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
        return render(
            "settings.html",
            page,
            title="Settings",
            section="settings",
            document=to_document(settings),
            gateway_text="\n".join(settings.cod_gateways),
            rto_text="\n".join(f"{tag} = {state}" for tag, state in settings.rto_tags.items()),
            counts=counts,
        )

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
        return render("deliveries.html", page, title="Deliveries", section="deliveries", groups=groups)
