"""What a fifth tier declared in one line must change everywhere (run by test_tier_levels.py).

Not collected on its own (its name does not start with ``test_``): it only holds with the
``tests.support.fifth_tier`` plugin, which declares ``diamond`` at 90,000.00 above platinum.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from service.config import Settings
from service.domain import tier_levels
from service.domain.settings import validate_update
from service.domain.tiers import tier_for, tier_sql
from service.types import Money
from tests.conftest import make_settings
from tests.support.api import Client, bearer, days_ago, get_json, new_api_key, order, send
from tests.support.deliveries import Delivery, Sessionmaker
from tests.support.payloads import SHOP, customer_payload, next_id

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

THRESHOLDS = {"diamond": "90000.00", "platinum": "50000.00", "gold": "25000.00", "silver": "10000.00"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, TIERLINE_DEV_SHOP=SHOP)


def buyer(total: str) -> list[Delivery]:
    cid = next_id()
    return [Delivery.of("customers/create", customer_payload(cid)), order(next_id(), cid, total, days_ago(3))]


def test_the_declaration_has_five_tiers() -> None:
    assert tier_levels.TIERS == ("diamond", "platinum", "gold", "silver", "bronze")


@pytest.mark.parametrize(
    ("ltv", "tier"),
    [("95000.00", "diamond"), ("90000.00", "diamond"), ("89999.99", "platinum"), ("5.00", "bronze")],
)
def test_the_rule_and_its_sql_agree(ltv: str, tier: str) -> None:
    thresholds = {name: Decimal(amount) for name, amount in THRESHOLDS.items()}
    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn:
        in_sql = conn.scalar(sa.select(tier_sql(sa.literal(Decimal(ltv), Money()), thresholds)))
    assert tier_for(Decimal(ltv), thresholds) == tier
    assert in_sql == tier


def test_validation_asks_for_the_fifth_threshold_in_order() -> None:
    _, missing = validate_update({"tierThresholds": {k: v for k, v in THRESHOLDS.items() if k != "diamond"}})
    _, unordered = validate_update({"tierThresholds": THRESHOLDS | {"diamond": "40000.00"}})
    clean, fine = validate_update({"tierThresholds": THRESHOLDS})

    assert missing
    assert "diamond" in missing[0]["message"]
    assert unordered == [{"field": "tierThresholds.platinum", "message": "must be less than diamond"}]
    assert fine == []
    assert clean["tierThresholds"] == THRESHOLDS


async def test_the_api_and_the_pages_know_it(
    client: Client, sessionmaker: Sessionmaker, settings: Settings
) -> None:
    await send(sessionmaker, settings, buyer("95000.00") + buyer("60000.00") + buyer("100.00"))
    key = await new_api_key(sessionmaker)

    defaults = await get_json(client, key, "/api/settings")
    customers = await get_json(client, key, "/api/customers", tier="diamond")
    overview = await get_json(client, key, "/api/reports/overview")
    suggestion = await get_json(client, key, "/api/tiers/suggestion")
    schema: dict[str, Any] = (await client.get("/schema/openapi.json")).json()
    listing = (await client.get("/app")).text
    settings_page = (await client.get("/app/settings")).text
    saved = await client.put("/api/settings", json={"tierThresholds": THRESHOLDS}, headers=bearer(key))

    assert defaults["tierThresholds"]["diamond"] == "90000.00"
    assert [c["tier"] for c in customers["items"]] == ["diamond"]
    assert overview["tiers"] == {"diamond": 1, "platinum": 1, "gold": 0, "silver": 0, "bronze": 1}
    assert list(suggestion["tierThresholds"]) == ["diamond", "platinum", "gold", "silver"]
    assert "diamond" in schema["components"]["schemas"]["TierCountsRead"]["required"]
    assert 'data-tier="diamond"' in listing
    assert ".tier-diamond {" in listing
    assert 'name="diamond"' in settings_page
    assert "Diamond" in settings_page
    assert saved.status_code == 200, saved.text
