"""Settings from the environment (and an optional ``.env``), names as in docs/operations.md and the README.

Nothing here runs at import time: ``Settings()`` is built by the CLI or by ``create_app``.
"""

from __future__ import annotations

import logging
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from service.crypto import dev_session_key
from shopify_client import DEFAULT_SHOP_ORIGIN, check_origin_template

logger = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/tierline.db"

#: Development fallbacks, documented in README.md. Never accepted in production. The secret is
#: 32 bytes or more, the least HS256 keys should have (PyJWT warns below that).
DEV_SECRETS: dict[str, str] = {
    "shopify_api_key": "tierline-dev-api-key",
    "shopify_api_secret": "tierline-dev-secret-for-development-only",
    "tierline_encryption_key": "tierline-dev-encryption-key-0000000000000000",
}
#: Values that count as unset; the earlier, shorter development secret among them.
_PLACEHOLDERS = {"", "changeme", "change-me", "xxx", "secret", "todo", "placeholder", "tierline-dev-secret"}
#: The databases tierline runs on (docs/operations.md); URLs are first normalized to these drivers.
SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+psycopg")
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
    scopes: str = Field(
        default="read_customers,read_orders,read_fulfillments,read_returns,write_customers,write_orders",
        alias="SCOPES",
    )
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
    worker_batch: int = Field(default=200, ge=1, le=1000, alias="TIERLINE_WORKER_BATCH")
    worker_poll_seconds: float = Field(default=1.0, gt=0, alias="TIERLINE_WORKER_POLL")
    # Batches one worker process applies at once (PostgreSQL; SQLite has one writer: always 1).
    # More than one pays when the database is far (round trips the process waits on); on
    # loopback the worker is CPU-bound and two measured no faster (docs/operations.md).
    worker_concurrency: int = Field(default=1, ge=1, le=16, alias="TIERLINE_WORKER_CONCURRENCY")
    intake_timeout_seconds: float = Field(default=3.0, gt=0, alias="TIERLINE_INTAKE_TIMEOUT")
    db_pool_size: int = Field(default=10, ge=1, alias="TIERLINE_DB_POOL_SIZE")
    # `tierline serve` processes sharing the port (PostgreSQL only; docs/scaling.md).
    web_processes: int = Field(default=1, ge=1, le=64, alias="TIERLINE_WEB_PROCESSES")
    log_format: Literal["auto", "json", "console"] = Field(default="auto", alias="TIERLINE_LOG_FORMAT")
    dev_shop: str = Field(default="tierline-dev.myshopify.com", alias="TIERLINE_DEV_SHOP")
    # Shopify calls and background sync jobs (docs/shopify-app.md).
    shopify_url: str = Field(default=DEFAULT_SHOP_ORIGIN, alias="TIERLINE_SHOPIFY_URL")
    reconcile_hours: float = Field(default=6.0, gt=0, le=24 * 30, alias="TIERLINE_RECONCILE_HOURS")
    job_lease_seconds: float = Field(default=60.0, ge=1, le=3600, alias="TIERLINE_JOB_LEASE")
    bulk_poll_seconds: float = Field(default=5.0, gt=0, le=600, alias="TIERLINE_BULK_POLL")
    job_concurrency: int = Field(default=2, ge=1, le=32, alias="TIERLINE_JOB_CONCURRENCY")

    @field_validator("database_url")
    @classmethod
    def _normalize_url(cls, value: str) -> str:
        url = normalize_database_url(value.strip())
        try:
            driver = make_url(url).drivername
        except ArgumentError:
            raise ValueError(
                "not a database URL (expected sqlite+aiosqlite:///path/to/file.db or "
                "postgresql://user@host:5432/name)"
            ) from None
        if driver not in SUPPORTED_DRIVERS:
            raise ValueError(
                f"unsupported database {driver.split('+')[0]!r}: tierline runs on SQLite "
                "(sqlite+aiosqlite:///path/to/file.db) or PostgreSQL (postgresql://user@host:5432/name)"
            )
        return url

    @model_validator(mode="after")
    def _one_process_on_sqlite(self) -> Settings:
        if self.web_processes > 1 and self.is_sqlite:
            raise ValueError(
                "TIERLINE_WEB_PROCESSES above 1 needs PostgreSQL: SQLite has one writer, and the "
                "processes would contend for it (keep 1, or set DATABASE_URL to a PostgreSQL database)"
            )
        return self

    @model_validator(mode="after")
    def _app_url_follows_port(self) -> Settings:
        """Without SHOPIFY_APP_URL, the app's own address (HOST/PORT) is its URL (development)."""
        if "shopify_app_url" not in self.model_fields_set:
            # Written past __setattr__ so that the field still counts as not set (a default).
            self.__dict__["shopify_app_url"] = self.local_url
        return self

    @property
    def local_url(self) -> str:
        """Where a client on this machine reaches ``tierline serve``: ``http://127.0.0.1:PORT``
        (an address that listens on every interface is reached on the loopback one)."""
        host = self.host.strip()
        if host in ("", "0.0.0.0", "::", "[::]"):  # noqa: S104 (a comparison, not a bind)
            host = "127.0.0.1"
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @field_validator("shopify_url")
    @classmethod
    def _check_shopify_url(cls, value: str) -> str:
        return check_origin_template(value)

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
        # A stand-in Shopify is for development and tests only: production talks to the shop.
        if self.is_production and self.shopify_url != DEFAULT_SHOP_ORIGIN:
            missing.append("TIERLINE_SHOPIFY_URL")
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
        updates: dict[str, str] = {
            attr: value
            for attr, value in DEV_SECRETS.items()
            if getattr(self, attr).strip().lower() in _PLACEHOLDERS
        }
        if updates:
            # One line for all of them: every command and `serve` builds its settings once.
            logger.warning("config.dev_secrets", extra={"setting": ",".join(a.upper() for a in updates)})
        return self.model_copy(update=updates)
