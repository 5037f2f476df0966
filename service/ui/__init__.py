"""Merchant pages: server-rendered HTML under ``/app``, embeddable in Shopify admin (docs/ui.md)."""
