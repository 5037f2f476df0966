"""Topic router: maps a topic to a payload model and a thin handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.deferred import DeferredFigures
from service.domain.settings import ShopSettings, get_shop_settings

P = TypeVar("P", bound=BaseModel)


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
    #: are settled before the batch commits (only handlers of ``batchable`` routes see it).
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
#: Applies several deliveries of one shop at once, in list order (each with its own context;
#: they share the session and ``ctx.deferred``).
ManyHandler = Callable[[Sequence[tuple[DeliveryContext, P]]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Route(Generic[P]):
    model: type[P]
    handler: Handler[P]
    #: The handler leaves figures and tier histories to ``ctx.deferred`` when it is set, and its
    #: writes commute with work still owed by earlier deliveries of the batch.
    batchable: bool = False
    #: Optional set-based handler for a run of consecutive deliveries of these topics whose
    #: ``key`` differs (the worker groups them; it must leave what ``handler`` one by one leaves).
    many: ManyHandler[P] | None = None
    key: Callable[[P], Hashable] | None = None

    def parse(self, body: bytes) -> P:
        """Validate a raw body against the topic's payload model (raises ValidationError)."""
        return self.model.model_validate_json(body)

    async def __call__(self, ctx: DeliveryContext, body: bytes) -> None:
        await self.handler(ctx, self.parse(body))


class TopicRouter:
    def __init__(self) -> None:
        self._routes: dict[str, Route[Any]] = {}

    def register(
        self,
        *topics: str,
        model: type[P],
        batchable: bool = False,
        many: ManyHandler[P] | None = None,
        key: Callable[[P], Hashable] | None = None,
    ) -> Callable[[Handler[P]], Handler[P]]:
        if (many is None) != (key is None) or (many is not None and not batchable):
            raise ValueError("a set-based handler needs a key and a batchable route")

        def decorator(handler: Handler[P]) -> Handler[P]:
            for topic in topics:
                if topic in self._routes:
                    raise ValueError(f"topic {topic} registered twice")
                self._routes[topic] = Route(model, handler, batchable, many, key)
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
