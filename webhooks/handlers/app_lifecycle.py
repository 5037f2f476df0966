"""app/uninstalled: drop the shop's tokens; its keys and session tokens stop working.

A body whose ``myshopify_domain`` names another shop than the header is not applied (``failed``).
"""

from __future__ import annotations

from service.domain import installs
from webhooks.payloads import AppUninstalledPayload
from webhooks.router import DeliveryContext, TopicRouter

router = TopicRouter()


@router.register("app/uninstalled", model=AppUninstalledPayload)
async def on_uninstalled(ctx: DeliveryContext, payload: AppUninstalledPayload) -> None:
    ctx.require_shop(payload.myshopify_domain, "myshopify_domain")
    await installs.mark_uninstalled(ctx.session, ctx.shop_id)
