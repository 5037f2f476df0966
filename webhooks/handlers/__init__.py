"""Thin topic handlers: payload → snapshot → one domain call."""

from __future__ import annotations

from webhooks.handlers import app_lifecycle, compliance, customers, fulfillments, orders, refunds, returns
from webhooks.router import TopicRouter


def build_router() -> TopicRouter:
    router = TopicRouter()
    for module in (customers, orders, fulfillments, returns, refunds, app_lifecycle, compliance):
        router.include(module.router)
    return router
