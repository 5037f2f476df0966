"""Read-API models (camelCase on the wire). Never table models."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

T = TypeVar("T")


class Schema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class Page(Schema, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Opaque cursor of the next page; null on the last page.")


class WebhookAck(Schema):
    status: Literal["accepted", "duplicate"]


class HealthRead(Schema):
    status: Literal["ok"]


class ReadyRead(Schema):
    status: Literal["ready", "unavailable"]
    database: Literal["ok", "unreachable"]
    backlog: int | None = None
    oldest_pending_age_seconds: float | None = None


class DeliveryRead(Schema):
    id: str
    webhook_id: str
    event_id: str | None
    topic: str
    shop_domain: str
    status: Literal["pending", "processed", "failed", "ignored", "dead"]
    attempts: int
    last_error: str | None
    received_at: datetime
    processed_at: datetime | None


class ReplayRead(Schema):
    replayed: int
