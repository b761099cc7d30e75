"""The webhook routes, ``/webhooks/{provider}/webhook``: one per provider whose settings are
all set (a provider without settings is not mounted: 404).

A request's signature is checked on the raw body before anything parses it; a missing one
is answered 401, a wrong or stale one 403, and both are logged without the body. A verified
message is persisted before the webhook is answered 200, and answered in the background.
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import SecretStr, ValidationError

from channels.bridge import Inbound
from channels.messaging.messenger import Messenger
from channels.messaging.provider import IncompleteSettings, Provider
from channels.messaging.signatures import Verdict, subscription_challenge
from channels.messaging.slack import Slack
from channels.messaging.telegram import Telegram
from channels.messaging.whatsapp import WhatsApp
from channels.runtime import Runtime
from channels.settings import Settings
from channels.store import CLIENT_ID_MAX_CHARS, EXTERNAL_ID_MAX_CHARS, clean_id

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
"""Providers send a few kilobytes; anything far larger is not from them."""

REFUSED = {Verdict.MISSING: 401, Verdict.WRONG: 403, Verdict.STALE: 403}


def messaging_router(settings: Settings) -> APIRouter:
    """The webhooks of every provider configured in ``settings``."""
    router = APIRouter(prefix="/webhooks", include_in_schema=False)
    for provider in configured_providers(settings):
        _mount(router, provider)
        log.info("messaging: %s webhook at /webhooks%s", provider.channel, provider.path)
    return router


def configured_providers(settings: Settings) -> list[Provider]:
    """The providers whose settings are all set; raises :class:`IncompleteSettings` for one
    with only some of them (it could not verify or answer messages)."""
    providers: list[Provider] = []
    telegram = _complete(
        "telegram",
        bot_token=settings.telegram_bot_token,
        secret_token=settings.telegram_secret_token,
    )
    if telegram is not None:
        providers.append(
            Telegram(telegram["bot_token"], telegram["secret_token"], settings.telegram_api_url)
        )
    slack = _complete(
        "slack", signing_secret=settings.slack_signing_secret, bot_token=settings.slack_bot_token
    )
    if slack is not None:
        providers.append(Slack(slack["signing_secret"], slack["bot_token"], settings.slack_api_url))
    whatsapp = _complete(
        "whatsapp",
        app_secret=settings.whatsapp_app_secret,
        access_token=settings.whatsapp_access_token,
        verify_token=settings.whatsapp_verify_token,
    )
    if whatsapp is not None:
        providers.append(
            WhatsApp(
                whatsapp["app_secret"],
                whatsapp["access_token"],
                whatsapp["verify_token"],
                settings.graph_api_url,
            )
        )
    messenger = _complete(
        "messenger",
        app_secret=settings.messenger_app_secret,
        page_access_token=settings.messenger_page_access_token,
        verify_token=settings.messenger_verify_token,
    )
    if messenger is not None:
        providers.append(
            Messenger(
                messenger["app_secret"],
                messenger["page_access_token"],
                messenger["verify_token"],
                settings.graph_api_url,
            )
        )
    return providers


def _complete(channel: str, **values: SecretStr | None) -> dict[str, SecretStr] | None:
    present = {name: v for name, v in values.items() if v is not None and v.get_secret_value()}
    if not present:
        return None
    if len(present) < len(values):
        missing = [f"FRONTDESK_{channel}_{name}".upper() for name in values if name not in present]
        given = [f"FRONTDESK_{channel}_{name}".upper() for name in present]
        raise IncompleteSettings(
            f"the {channel} channel has {', '.join(given)} but not {', '.join(missing)}; "
            f"set them all to serve {channel}, or none to leave it off (docs/channels.md)"
        )
    return present


def _mount(router: APIRouter, provider: Provider) -> None:
    async def webhook(request: Request) -> Response:
        body = await _read_body(request)
        if body is None:
            log.warning("%s webhook refused: body over %d bytes", provider.channel, MAX_BODY_BYTES)
            return Response(status_code=413)
        verdict = provider.verify(request.headers, body, time.time())
        if verdict is not Verdict.OK:
            log.warning(
                "%s webhook refused: %s signature (from %s)",
                provider.channel,
                verdict.value,
                request.client.host if request.client else "unknown",
            )
            return Response(status_code=REFUSED[verdict])
        try:
            parsed = provider.parse(body, request.headers)
        except (ValidationError, ValueError) as exc:
            # signed by the provider, yet not what we expect: say what, not the body
            errors = exc.error_count() if isinstance(exc, ValidationError) else 1
            log.warning(
                "%s webhook: a signed body we could not read (%d error(s), %s)",
                provider.channel,
                errors,
                type(exc).__name__,
            )
            return Response(status_code=400)
        if parsed.challenge is not None:
            return JSONResponse({"challenge": parsed.challenge})
        runtime: Runtime = request.app.state.runtime
        for incoming in parsed.messages:  # all checked before any is accepted
            problem = inbound_problem(incoming.inbound)
            if problem is not None:
                log.warning("%s webhook: a signed body with %s", provider.channel, problem)
                return Response(status_code=400)
        for incoming in parsed.messages:
            await runtime.messaging.accept(provider, incoming)
        return Response(status_code=200)

    router.add_api_route(provider.path, webhook, methods=["POST"], name=f"{provider.channel}")
    verify_token = provider.verify_token
    if verify_token is None:
        return

    async def handshake(request: Request) -> Response:
        params = request.query_params
        challenge = subscription_challenge(params, verify_token.get_secret_value())
        if challenge is None:
            log.warning(
                "%s webhook handshake refused (hub.mode=%r, wrong or missing hub.verify_token)",
                provider.channel,
                params.get("hub.mode"),
            )
            return Response(status_code=403)
        return PlainTextResponse(challenge)

    router.add_api_route(
        provider.path, handshake, methods=["GET"], name=f"{provider.channel}_handshake"
    )


def inbound_problem(inbound: Inbound) -> str | None:
    """What makes a parsed message unusable (its sender's or its own id), else None."""
    for name, value, limit in (
        ("a sender id", inbound.sender, EXTERNAL_ID_MAX_CHARS),
        ("a message id", inbound.message_id, CLIENT_ID_MAX_CHARS),
    ):
        if not 0 < len(value) <= limit or not clean_id(value):
            return f"{name} that is empty, longer than {limit} characters or not plain text"
    return None


async def _read_body(request: Request) -> bytes | None:
    """The raw body, or ``None`` past :data:`MAX_BODY_BYTES` (read no further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
