"""The interactive API docs at ``/schema``: Swagger UI served from the installed package, offline.

Litestar's render plugins load their scripts from a CDN by default, so ``/schema`` was blank
without internet access (and ran whatever that CDN served that day). Here the page loads Swagger
UI's files from ``/schema/assets/``, copied from the ``swagger-ui-bundle-v2`` package at install
time: a pinned version, no third-party request at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from litestar import get
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import FromPath
from litestar.plugins import OpenAPISchemaPlugin
from litestar.response import File
from swagger_ui_bundle import swagger_ui_path

from service.schemas import WIRE_SCHEMAS

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.typing import FieldDefinition

ASSETS_PATH = "/schema/assets"
#: Only what the page loads is served (not the package's sample pages or source maps).
ASSET_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "swagger-ui.css": "text/css",
}


def render_plugin() -> SwaggerRenderPlugin:
    """Swagger UI at ``/schema`` (and ``/schema/swagger``), every asset from this server."""
    return SwaggerRenderPlugin(
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon="<link rel='icon' href='data:,'>",
    )


@get(
    f"{ASSETS_PATH}/{{name:str}}",
    include_in_schema=False,
    sync_to_thread=False,
    cache_control=CacheControlHeader(max_age=86400),
)
def schema_asset(name: FromPath[str]) -> File:
    """``/schema/assets/<file>``: Swagger UI's script, preset and styles from the installed package."""
    media_type = ASSET_FILES.get(name)
    if media_type is None:
        raise NotFoundException(f"no asset {name[:64]!r}")
    return File(
        path=Path(str(swagger_ui_path)) / name, media_type=media_type, content_disposition_type="inline"
    )


class WireTypes(OpenAPISchemaPlugin):
    """``Amount`` and ``ShopifyId`` are strings on the wire (``service.schemas``): the OpenAPI
    document says so, with their pattern, instead of ``number`` and ``integer``."""

    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return value in WIRE_SCHEMAS

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        wire = WIRE_SCHEMAS[field_definition.annotation]
        return Schema(
            type=OpenAPIType.STRING,
            pattern=wire["pattern"],
            examples=wire["examples"],
            description=wire["description"],
        )
