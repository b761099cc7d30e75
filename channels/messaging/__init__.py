"""Messaging apps: Telegram, Slack, WhatsApp Cloud API and Facebook Messenger (docs/channels.md).

Every provider follows one path: verify the webhook's signature on the raw body, parse the
body into :class:`channels.bridge.Inbound` messages, persist them through the bridge (a
redelivered provider message id is ignored there), answer the webhook at once, and let the
bot's reply go out through the provider's API in a background task, with retries.

``provider.py`` holds the shapes every provider shares, ``signatures.py`` the pure checks,
``outbound.py`` the retrying sender, ``dispatch.py`` the background answers, ``router.py``
the webhook routes; one module per provider translates its wire format.
"""
