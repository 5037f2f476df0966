"""Payload strings lose their NUL characters (PostgreSQL cannot store them), however the JSON
writes them, and nothing else changes (``webhooks.payloads.without_nul``)."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from webhooks.payloads import CustomerPayload, FulfillmentEventPayload, OrderPayload, without_nul

# Backslashes, the letters of an escape and NULs, mixed: the cases an escape parser gets wrong.
tricky = st.text(alphabet=st.sampled_from(["\x00", "\\", "u", "0", "a", "é", "\u2028", '"']), max_size=24)


@settings(max_examples=500, deadline=None)
@given(tricky, st.booleans())
@example("\\u0000", True)  # a backslash and "u0000": not a NUL
@example("\\\x00", True)  # a backslash, then a NUL
@example("\x001", True)  # a NUL then a digit: \u00001 in JSON
def test_a_string_loses_its_nuls_and_nothing_else(text: str, ascii_only: bool) -> None:
    body = json.dumps({"id": 1, "email": text, "first_name": text}, ensure_ascii=ascii_only).encode()

    customer = CustomerPayload.from_body(body)

    assert customer.email == text.replace("\x00", "")
    assert customer.first_name == text.replace("\x00", "")


def test_a_body_without_nul_is_passed_through_untouched() -> None:
    body = b'{"id": 1, "email": "a\\\\u0000b"}'

    assert without_nul(body) is body


def test_nuls_in_an_order_and_its_lists() -> None:
    body = json.dumps(
        {
            "id": 7,
            "email": "a\x00b@example.com",
            "tags": "vip\x00, rto",
            "payment_gateway_names": ["cash_on_\x00delivery"],
            "line_items": [{"id": 9, "title": "T\x00-shirt", "quantity": 1, "price": "1.00"}],
        }
    ).encode()

    order = OrderPayload.from_body(body)

    assert (order.email, order.tags) == ("ab@example.com", "vip, rto")
    assert order.payment_gateway_names == ["cash_on_delivery"]
    assert order.line_items[0].title == "T-shirt"


def test_a_raw_nul_byte_is_invalid_json_and_refused() -> None:
    with pytest.raises(ValidationError):
        CustomerPayload.from_body(b'{"id": 1, "email": "a\x00b"}')


def test_a_status_of_nuls_only_is_empty_and_refused() -> None:
    body = json.dumps({"id": 1, "fulfillment_id": 2, "order_id": 3, "status": "\x00\x00"}).encode()

    with pytest.raises(ValidationError, match="at least 1 character"):
        FulfillmentEventPayload.from_body(body)
