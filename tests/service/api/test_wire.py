"""The order grid's responses are written without pydantic (``service.api.wire``): for any view,
their bytes are the documented models' bytes (``OrderRead``, ``CustomerSummaryRead``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.api import wire
from service.api.customers import summary_reads
from service.api.orders import order_reads
from service.app import model_json
from service.domain.customer_views import CustomerSummary
from service.domain.order_views import EnrichedOrder
from service.domain.stats import Stats
from service.domain.tier_levels import TIERS
from service.schemas import CustomerStatsRead, CustomerSummaryRead, OrderItems, OrderRead, Page, StatsResponse

ids = st.integers(min_value=1, max_value=2**63 - 1)
texts = st.none() | st.text(max_size=12)
# Four decimal places, as stored (NUMERIC(20,4)), including the half-cent ties that round up.
amounts = st.decimals(min_value=-(10**9), max_value=10**9, places=4, allow_nan=False, allow_infinity=False)
# hypothesis bounds datetimes with naive values and attaches the time zone after.
moments = st.none() | st.datetimes(
    min_value=datetime(1970, 1, 2),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)
tiers = st.sampled_from(TIERS)


@st.composite
def enriched_orders(draw: st.DrawFn) -> EnrichedOrder:
    customer = draw(st.none() | ids)
    return EnrichedOrder(
        id=draw(ids),
        name=draw(texts),
        customer_id=customer,
        email=draw(texts),
        phone=draw(texts),
        created_at=draw(moments),
        updated_at=draw(moments),
        processed_at=draw(moments),
        cancelled_at=draw(moments),
        financial_status=draw(texts),
        fulfillment_status=draw(texts),
        currency=draw(st.none() | st.sampled_from(["INR", "USD"])),
        total_amount=draw(amounts),
        original_total=draw(amounts),
        payment_method=draw(st.sampled_from(["cod", "prepaid"])),
        tracking_status=draw(st.none() | st.sampled_from(["in_transit", "rto_delivered"])),
        delivered_at=draw(moments),
        tags=draw(st.lists(st.text(min_size=1, max_size=8), max_size=3)),
        test=draw(st.booleans()),
        customer_ltv=None if customer is None else draw(amounts),
        customer_order_count=None if customer is None else draw(st.integers(0, 10**6)),
        customer_rto_count=None if customer is None else draw(st.integers(0, 10**6)),
        customer_tier=None if customer is None else draw(tiers),
    )


@st.composite
def customer_summaries(draw: st.DrawFn) -> CustomerSummary:
    return CustomerSummary(
        id=draw(ids),
        email=draw(texts),
        phone=draw(texts),
        first_name=draw(texts),
        last_name=draw(texts),
        tier=draw(tiers),
        ltv=draw(amounts),
        order_count=draw(st.integers(0, 10**6)),
        rto_count=draw(st.integers(0, 10**6)),
        last_order_at=draw(moments),
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(enriched_orders(), max_size=5))
def test_order_items_are_the_documented_bytes(found: list[EnrichedOrder]) -> None:
    documented = bytes(model_json(OrderItems(items=order_reads(found))))

    assert wire.order_items(found).content == documented


@settings(max_examples=100, deadline=None)
@given(st.lists(enriched_orders(), max_size=3), st.none() | st.text(max_size=20))
def test_an_order_page_is_the_documented_bytes(found: list[EnrichedOrder], cursor: str | None) -> None:
    documented = bytes(model_json(Page[OrderRead](items=order_reads(found), next_cursor=cursor)))

    assert wire.order_page(found, cursor).content == documented


@settings(max_examples=200, deadline=None)
@given(st.lists(customer_summaries(), max_size=5), st.none() | st.text(max_size=20))
def test_a_customer_page_is_the_documented_bytes(found: list[CustomerSummary], cursor: str | None) -> None:
    documented = bytes(model_json(Page[CustomerSummaryRead](items=summary_reads(found), next_cursor=cursor)))

    assert wire.customer_page(found, cursor).content == documented


figures = st.builds(Stats, amounts, st.integers(0, 10**6), st.integers(0, 10**6), tiers)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(ids, figures, max_size=5))
def test_customer_stats_are_the_documented_bytes(found: dict[int, Stats]) -> None:
    documented = bytes(
        model_json(
            StatsResponse(
                stats={
                    str(cid): CustomerStatsRead.model_validate(f, from_attributes=True)
                    for cid, f in found.items()
                }
            )
        )
    )

    assert wire.customer_stats_json({cid: wire.stats_item(*f) for cid, f in found.items()}) == documented


def test_the_edges_of_money_ids_and_times() -> None:
    """The cases a random draw may miss, each spelled out."""
    order = EnrichedOrder(
        id=2**63 - 1,
        name='#1001 «ünïcode» \u2028 "quoted" </script>',
        customer_id=2**53 + 1,
        email=None,
        phone="+91 98765 43210",
        created_at=datetime(2026, 1, 2, 3, 4, 5, 5, tzinfo=UTC),
        updated_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        processed_at=datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        cancelled_at=None,
        financial_status="paid",
        fulfillment_status=None,
        currency="INR",
        total_amount=Decimal("12.3450"),
        original_total=Decimal("-0.0050"),
        payment_method="cod",
        tracking_status="rto_delivered",
        delivered_at=None,
        tags=["vip", "rto"],
        test=False,
        customer_ltv=Decimal("7"),
        customer_order_count=3,
        customer_rto_count=1,
        customer_tier="gold",
    )

    body = wire.order_items([order]).content
    assert isinstance(body, bytes)
    item = msgspec.json.decode(body)["items"][0]

    assert body == bytes(model_json(OrderItems(items=order_reads([order]))))
    assert (item["id"], item["customerId"]) == ("9223372036854775807", "9007199254740993")
    assert (item["totalAmount"], item["originalTotal"], item["customerLtv"]) == ("12.35", "-0.01", "7.00")
    assert item["createdAt"] == "2026-01-02T03:04:05.000005Z"
    assert item["processedAt"] == "2026-01-02T03:04:05.123000+05:30"


def test_a_struct_that_drifts_from_its_model_is_refused_on_import() -> None:
    class Short(msgspec.Struct, rename="camel"):
        id: str

    with pytest.raises(RuntimeError, match="OrderRead's fields"):
        wire._same_fields(Short, OrderRead)
