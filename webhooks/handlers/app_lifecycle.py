"""app/uninstalled: drop the shop's tokens; its keys and session tokens stop working."""

from __future__ import annotations

from service.domain import installs
from webhooks.payloads import AppUninstalledPayload
from webhooks.router import DeliveryContext, TopicRouter

router = TopicRouter()


@router.register("app/uninstalled", model=AppUninstalledPayload)
async def on_uninstalled(ctx: DeliveryContext, payload: AppUninstalledPayload) -> None:
    await installs.mark_uninstalled(ctx.session, ctx.shop_id)
