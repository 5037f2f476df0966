"""Settings from the environment (and an optional ``.env``), names as in SPEC §2.

Nothing here runs at import time: ``Settings()`` is built by the CLI or by ``create_app``.
"""

from __future__ import annotations

import logging
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.crypto import dev_session_key

logger = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/tierline.db"

#: Development fallbacks, documented in README.md. Never accepted in production.
DEV_SECRETS: dict[str, str] = {
    "shopify_api_key": "tierline-dev-api-key",
    "shopify_api_secret": "tierline-dev-secret",
    "tierline_encryption_key": "tierline-dev-encryption-key-0000000000000000",
}
_PLACEHOLDERS = {"", "changeme", "change-me", "xxx", "secret", "todo", "placeholder"}
#: Shortest values production accepts. Shopify's client secrets are 32 hexadecimal characters (or
#: ``shpss_`` and 32); 16 refuses typos and toy values without betting on Shopify's format.
#: The encryption key is ours: ``secrets.token_urlsafe(48)`` gives 64 characters.
MIN_SHOPIFY_SECRET_LENGTH = 16
MIN_ENCRYPTION_KEY_LENGTH = 32


class MissingSecretsError(RuntimeError):
    """Production settings that are missing, placeholders or unsafe: (variable, reason) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        self.names = [name for name, _ in problems]
        super().__init__("; ".join(f"{name} {reason}" for name, reason in problems))


def normalize_database_url(url: str) -> str:
    """Map Fly/Heroku style ``postgres://`` URLs onto the async psycopg driver."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://", "postgresql+asyncpg://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field(default=DEFAULT_DATABASE_URL, alias="DATABASE_URL")
    shopify_api_key: str = Field(default="", alias="SHOPIFY_API_KEY")
    shopify_api_secret: str = Field(default="", alias="SHOPIFY_API_SECRET")
    shopify_api_secret_previous: str = Field(default="", alias="SHOPIFY_API_SECRET_PREVIOUS")
    shopify_app_url: str = Field(default="http://127.0.0.1:8000", alias="SHOPIFY_APP_URL")
    scopes: str = Field(default="read_customers,read_orders,read_fulfillments,read_returns", alias="SCOPES")
    env: Literal["development", "production"] = Field(default="development", alias="TIERLINE_ENV")
    tierline_encryption_key: str = Field(default="", alias="TIERLINE_ENCRYPTION_KEY")
    host: str = Field(default="127.0.0.1", alias="HOST")
    port: int = Field(default=8000, ge=1, le=65535, alias="PORT")
    worker: Literal["inline", "off"] = Field(default="inline", alias="TIERLINE_WORKER")
    max_body: int = Field(default=5 * 1024 * 1024, ge=1024, alias="TIERLINE_MAX_BODY")
    # What a client can make a process hold (docs/operations.md, "Limits").
    body_budget: int = Field(default=64 * 1024 * 1024, ge=1024, alias="TIERLINE_BODY_BUDGET")
    body_timeout_seconds: float = Field(default=10.0, gt=0, alias="TIERLINE_BODY_TIMEOUT")
    max_header_bytes: int = Field(default=64 * 1024, ge=4096, alias="TIERLINE_MAX_HEADER_BYTES")
    header_timeout_seconds: float = Field(default=10.0, gt=0, alias="TIERLINE_HEADER_TIMEOUT")
    keep_alive_seconds: int = Field(default=5, ge=1, alias="TIERLINE_KEEP_ALIVE")
    forwarded_allow_ips: str = Field(default="127.0.0.1,::1", alias="FORWARDED_ALLOW_IPS")
    # Inbox and worker tuning (documented in docs/architecture.md).
    max_attempts: int = Field(default=8, ge=1, alias="TIERLINE_MAX_ATTEMPTS")
    retention_days: int = Field(default=14, ge=1, alias="TIERLINE_RETENTION_DAYS")
    worker_batch: int = Field(default=100, ge=1, le=1000, alias="TIERLINE_WORKER_BATCH")
    worker_poll_seconds: float = Field(default=1.0, gt=0, alias="TIERLINE_WORKER_POLL")
    intake_timeout_seconds: float = Field(default=3.0, gt=0, alias="TIERLINE_INTAKE_TIMEOUT")
    db_pool_size: int = Field(default=10, ge=1, alias="TIERLINE_DB_POOL_SIZE")
    log_format: Literal["auto", "json", "console"] = Field(default="auto", alias="TIERLINE_LOG_FORMAT")
    dev_shop: str = Field(default="tierline-dev.myshopify.com", alias="TIERLINE_DEV_SHOP")

    @field_validator("database_url")
    @classmethod
    def _normalize_url(cls, value: str) -> str:
        return normalize_database_url(value)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        """The secrets a signature may be made with: current first, previous during rotation."""
        return tuple(s for s in (self.shopify_api_secret, self.shopify_api_secret_previous) if s)

    @property
    def session_token_keys(self) -> tuple[str | bytes, ...]:
        """Keys a session token may be signed with: the app secrets (Shopify signs with them) and,
        in development only, the key of the tokens the development pages mint."""
        if self.is_production or not self.shopify_api_secret:
            return self.webhook_secrets
        return (*self.webhook_secrets, dev_session_key(self.shopify_api_secret))

    def missing_secrets(self) -> list[str]:
        """Environment names of required secrets that are unset or placeholders."""
        missing = []
        for attr, env_name in (
            ("shopify_api_key", "SHOPIFY_API_KEY"),
            ("shopify_api_secret", "SHOPIFY_API_SECRET"),
            ("tierline_encryption_key", "TIERLINE_ENCRYPTION_KEY"),
        ):
            value: str = getattr(self, attr)
            if value.strip().lower() in _PLACEHOLDERS or value == DEV_SECRETS[attr]:
                missing.append(env_name)
        return missing

    def production_problems(self) -> list[tuple[str, str]]:
        """What production refuses, as (variable, reason): missing or placeholder secrets, a
        public development value (as the previous secret too: a token signed with it would pass),
        secrets shorter than the documented minimum, and an app URL that is not ``https://``
        (the OAuth state cookie is ``Secure`` only then, and Shopify requires HTTPS)."""
        problems = [(name, "is missing or a placeholder") for name in self.missing_secrets()]
        listed = {name for name, _ in problems}
        for value, name, minimum in (
            (self.shopify_api_secret, "SHOPIFY_API_SECRET", MIN_SHOPIFY_SECRET_LENGTH),
            (self.tierline_encryption_key, "TIERLINE_ENCRYPTION_KEY", MIN_ENCRYPTION_KEY_LENGTH),
        ):
            if name not in listed and len(value.strip()) < minimum:
                problems.append((name, f"is shorter than {minimum} characters"))
        previous = self.shopify_api_secret_previous
        if previous:
            if previous.strip().lower() in _PLACEHOLDERS or previous in DEV_SECRETS.values():
                problems.append(("SHOPIFY_API_SECRET_PREVIOUS", "is a placeholder or a development value"))
            elif len(previous.strip()) < MIN_SHOPIFY_SECRET_LENGTH:
                problems.append(
                    (
                        "SHOPIFY_API_SECRET_PREVIOUS",
                        f"is shorter than {MIN_SHOPIFY_SECRET_LENGTH} characters",
                    )
                )
        try:
            url = urlsplit(self.shopify_app_url.strip())
            secure = url.scheme == "https" and bool(url.hostname)
        except ValueError:
            secure = False
        if not secure:
            problems.append(("SHOPIFY_APP_URL", "must be the app's public https:// URL"))
        return problems

    def with_dev_fallbacks(self) -> Settings:
        """Fill missing secrets with the documented dev values (development only), warning once each.

        In production, raise :class:`MissingSecretsError` naming every variable it refuses
        (:meth:`production_problems`).
        """
        if self.is_production:
            problems = self.production_problems()
            if problems:
                raise MissingSecretsError(problems)
            return self
        if not self.missing_secrets():
            return self
        updates: dict[str, str] = {}
        for attr, value in DEV_SECRETS.items():
            if getattr(self, attr).strip().lower() in _PLACEHOLDERS:
                updates[attr] = value
                logger.warning("config.dev_secret", extra={"setting": attr.upper()})
        return self.model_copy(update=updates)
