"""``body_ids``: its short path for plain digit strings reads exactly what ``parse_id`` reads.

Every list of values either gives the ids ``parse_id`` gives, in order, or the same ``422`` with
the same errors, whichever path read it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.api.ids import MAX_ID, body_ids, parse_id
from service.errors import UnprocessableError

#: Values near every edge of the short path: zero, the 64-bit bound, digits that are not ASCII
#: (full-width, superscript, Arabic-Indic: ``str.isdigit`` says yes), spaces, gids, booleans.
EDGES: list[str | int] = [
    "1",
    "007",
    "0",
    "00",
    str(MAX_ID),
    str(MAX_ID + 1),
    "1" * 20,
    "\uff11\uff12\uff13",
    "\u00b2",
    "\u0661\u0662\u0663",
    " 12",
    "12 ",
    "",
    "-5",
    "+5",
    "1_000",
    "gid://shopify/Customer/42",
    "gid://shopify/Order/42",
    42,
    0,
    -1,
    MAX_ID,
    MAX_ID + 1,
    True,
]


def expected(values: list[str | int]) -> list[int] | list[str]:
    """What the one rule says: every id parsed, else the indices of the bad ones."""
    parsed = [parse_id(value, "Customer") for value in values]
    bad = [f"customerIds[{i}]" for i, number in enumerate(parsed) if number is None]
    return bad or [number for number in parsed if number is not None]


def outcome(values: list[str | int]) -> list[int] | list[str]:
    try:
        return body_ids(values, "Customer", "customerIds")
    except UnprocessableError as exc:
        return [error["field"] for error in exc.errors or [{"field": "no errors listed"}]]


@pytest.mark.parametrize("edge", EDGES, ids=repr)
def test_each_edge_after_good_ids_reads_as_parse_id_reads_it(edge: str | int) -> None:
    for values in ([edge], ["12", "34", edge], [edge, "12"], ["12", edge, "34"]):
        assert outcome(values) == expected(values)


def test_plain_digit_strings_are_read_in_order_with_duplicates_kept() -> None:
    assert body_ids(["30", "10", "30", str(MAX_ID)], "Customer", "customerIds") == [30, 10, 30, MAX_ID]


def test_a_bad_id_after_good_ones_is_named_by_its_index() -> None:
    with pytest.raises(UnprocessableError) as caught:
        body_ids(["1", "2", "\u0661\u0662\u0663", "4", "0"], "Customer", "customerIds")
    assert caught.value.errors == [
        {"field": "customerIds[2]", "message": "not a Customer id"},
        {"field": "customerIds[4]", "message": "not a Customer id"},
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(EDGES),
            st.integers(min_value=-2, max_value=2**64),
            st.integers(min_value=0, max_value=2**64).map(str),
            st.text(alphabet="0123456789\uff11\u0662\u00b2 -+gid:/shopifyCustomer", max_size=24),
        ),
        max_size=12,
    )
)
def test_any_list_reads_as_parse_id_reads_it(values: list[str | int]) -> None:
    assert outcome(values) == expected(values)
