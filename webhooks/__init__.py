"""Webhook intake, typed payloads, topic router, thin handlers and the inbox worker."""
