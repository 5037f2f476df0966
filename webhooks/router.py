"""Topic router: maps a topic to a payload model and a thin handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.deferred import DeferredFigures
from service.domain.settings import ShopSettings, get_shop_settings
from webhooks.payloads import Payload

P = TypeVar("P", bound=Payload)


class PermanentDeliveryError(Exception):
    """A delivery that can never apply as it is (bad payload): marked ``failed``, not retried."""


@dataclass(slots=True)
class DeliveryContext:
    """What a handler knows about the delivery it applies, inside the worker's transaction."""

    session: AsyncSession
    delivery_id: int
    shop_id: int
    shop_domain: str
    webhook_id: str
    topic: str
    #: ``X-Shopify-Triggered-At``, else the time tierline received the delivery.
    occurred_at: datetime
    _settings_cache: dict[int, ShopSettings] = field(default_factory=dict)
    #: Set when the worker applies a whole batch at once: figures and tier histories go here and
    #: are settled before the batch commits (only for topics whose handlers commute with what
    #: earlier deliveries owe, ``webhooks.batch.DEFERRED_TOPICS``).
    deferred: DeferredFigures | None = None

    def require_shop(self, named: str | None, field: str) -> None:
        """Refuse a body that names another shop than the delivery's ``X-Shopify-Shop-Domain``.

        Privacy and uninstall deliveries act on a whole shop or customer: one whose body says a
        different shop is not applied to the header's shop (``failed``, with this reason).
        A body that names no shop (the field absent or null) is taken as the header's.
        """
        if named is None or not named.strip():
            return
        if named.strip().lower() != self.shop_domain:
            raise PermanentDeliveryError(
                f"the body's {field} names another shop than X-Shopify-Shop-Domain "
                f"({self.shop_domain}): not applied"
            )

    async def shop_settings(self) -> ShopSettings:
        cached = self._settings_cache.get(self.shop_id)
        if cached is None:
            cached = await get_shop_settings(self.session, self.shop_id)
            self._settings_cache[self.shop_id] = cached
        return cached


Handler = Callable[[DeliveryContext, P], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Route(Generic[P]):
    """A topic's payload model and its handler. How deliveries are grouped into a batch is not
    the route's business (:mod:`webhooks.batch`)."""

    model: type[P]
    handler: Handler[P]

    def parse(self, body: bytes) -> P:
        """Validate a raw body against the topic's payload model (raises ValidationError)."""
        return self.model.from_body(body)

    async def __call__(self, ctx: DeliveryContext, body: bytes) -> None:
        await self.handler(ctx, self.parse(body))


class TopicRouter:
    def __init__(self) -> None:
        self._routes: dict[str, Route[Any]] = {}

    def register(self, *topics: str, model: type[P]) -> Callable[[Handler[P]], Handler[P]]:
        def decorator(handler: Handler[P]) -> Handler[P]:
            for topic in topics:
                if topic in self._routes:
                    raise ValueError(f"topic {topic} registered twice")
                self._routes[topic] = Route(model, handler)
            return handler

        return decorator

    def get(self, topic: str) -> Route[Any] | None:
        return self._routes.get(topic)

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(self._routes)

    def include(self, other: TopicRouter) -> None:
        for topic, route in other._routes.items():
            if topic in self._routes:
                raise ValueError(f"topic {topic} registered twice")
            self._routes[topic] = route
