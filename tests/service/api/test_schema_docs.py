"""``/schema``: the interactive API docs load nothing from another origin (issue 14, item 6).

The page is parsed for every ``src`` and ``href``; each must be a path on this server, and each
must answer with the file (the browser test also renders the page in Chromium without network).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.app import create_app
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio

Client = AsyncTestClient[Litestar]
REFERENCE = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.fixture
async def docs_client(tmp_path: Path) -> AsyncIterator[Client]:
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"), run_worker=False)
    async with AsyncTestClient(app) as client:
        yield client


async def test_every_asset_of_the_docs_page_is_served_here(docs_client: Client) -> None:
    page = await docs_client.get("/schema")
    assert page.status_code == 200
    references = REFERENCE.findall(page.text)
    assert {"/schema/assets/swagger-ui-bundle.js", "/schema/assets/swagger-ui.css"} <= set(references)
    for reference in references:
        if reference.startswith("data:"):
            continue
        assert reference.startswith("/"), reference
        assert not reference.startswith("//"), reference
        asset = await docs_client.get(reference)
        assert asset.status_code == 200, reference
        assert len(asset.content) > 10_000, reference
    assert "@latest" not in page.text
    assert "cdn." not in page.text


async def test_the_docs_read_this_servers_openapi_document(docs_client: Client) -> None:
    page = await docs_client.get("/schema")
    assert "SwaggerUIBundle(" in page.text
    assert '"openapi":"3.1.0"' in page.text.replace(" ", "")  # the spec is inlined, not fetched


@pytest.mark.parametrize("name", ["index.html", "swagger-ui-bundle.js.map", "..%2F__init__.py", "x"])
async def test_only_the_pages_assets_are_served(docs_client: Client, name: str) -> None:
    assert (await docs_client.get(f"/schema/assets/{name}")).status_code == 404
