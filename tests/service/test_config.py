"""Settings (docs/operations.md): the database URLs tierline runs on, and the app URL that
follows HOST/PORT."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.config import Settings


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("sqlite+aiosqlite:///./data/tierline.db", "sqlite+aiosqlite:///./data/tierline.db"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgres://u:p@db:5432/t", "postgresql+psycopg://u:p@db:5432/t"),
        ("postgresql://db/t", "postgresql+psycopg://db/t"),
        (" postgresql+asyncpg://db/t ", "postgresql+psycopg://db/t"),
    ],
)
def test_supported_database_urls(given: str, used: str) -> None:
    assert Settings(DATABASE_URL=given).database_url == used


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@localhost/shop", "unsupported database 'mysql'"),
        ("mssql+pyodbc://x", "unsupported database 'mssql'"),
        ("oracle://x", "unsupported database 'oracle'"),
        ("", "not a database URL"),
        ("just words", "not a database URL"),
    ],
)
def test_other_databases_are_refused_by_name(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(DATABASE_URL=url)


def test_the_app_url_follows_host_and_port_unless_set() -> None:
    assert Settings(PORT=8010).shopify_app_url == "http://127.0.0.1:8010"
    assert Settings(HOST="0.0.0.0", PORT=9000).shopify_app_url == "http://127.0.0.1:9000"  # noqa: S104
    assert Settings(HOST="::1", PORT=9000).local_url == "http://[::1]:9000"
    explicit = Settings(SHOPIFY_APP_URL="https://tierline.example", PORT=8010)
    assert explicit.shopify_app_url == "https://tierline.example"
    assert "shopify_app_url" not in Settings(PORT=8010).model_fields_set


@pytest.mark.parametrize("port", [0, 65536, -5])
def test_port_out_of_range(port: int) -> None:
    with pytest.raises(ValidationError, match="PORT"):
        Settings(PORT=port)
