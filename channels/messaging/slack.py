"""Slack Events API: ``message`` events (subscribe to ``message.im`` for direct messages)
arrive signed with the app's signing secret; replies go out with ``chat.postMessage`` and the
bot token. Buttons are listed under the text (Slack buttons need an interactivity endpoint).
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Mapping

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from channels.bridge import Inbound
from channels.messaging.provider import (
    Address,
    Incoming,
    OutboundRequest,
    Parsed,
    Reply,
    client_id,
    options_text,
    split_text,
)
from channels.messaging.signatures import Verdict, check_slack_signature

log = logging.getLogger(__name__)

TEXT_LIMIT = 4000
MENTION = re.compile(r"<@[A-Z0-9]+>\s*")
LINK = re.compile(r"<([^<>|]+)\|([^<>]+)>|<([^<>|]+)>")


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Event(_Wire):
    type: str
    subtype: str | None = None
    bot_id: str | None = None
    user: str | None = None
    channel: str | None = None
    text: str | None = None


class _Envelope(_Wire):
    type: str
    challenge: str | None = None
    event_id: str | None = None
    event: _Event | None = None


class Slack:
    channel = "slack"
    path = "/slack/webhook"
    verify_token: SecretStr | None = None

    def __init__(self, signing_secret: SecretStr, bot_token: SecretStr, api_url: str) -> None:
        self._secret = signing_secret
        self._token = bot_token
        self._api = api_url.rstrip("/")

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verdict:
        return check_slack_signature(
            self._secret.get_secret_value(),
            body,
            headers.get("x-slack-request-timestamp"),
            headers.get("x-slack-signature"),
            now,
        )

    def parse(self, body: bytes, headers: Mapping[str, str]) -> Parsed:
        envelope = _Envelope.model_validate_json(body)
        if envelope.type == "url_verification":
            if envelope.challenge is None:
                raise ValueError("url_verification without a challenge")
            return Parsed(challenge=envelope.challenge)
        event = envelope.event
        if envelope.type != "event_callback" or event is None or envelope.event_id is None:
            return Parsed()
        if retry := headers.get("x-slack-retry-num"):
            # Slack resends an event it thinks we missed; the event id deduplicates it.
            log.info(
                "slack retry %s of event %s (%s)",
                retry,
                envelope.event_id,
                headers.get("x-slack-retry-reason", "no reason given"),
            )
        if (
            event.type != "message"
            or event.subtype is not None  # joins, edits, deletions, bot_message...
            or event.bot_id is not None  # our own replies come back as events too
            or not event.user
            or not event.channel
            or not event.text
        ):
            return Parsed()
        text = plain_text(event.text)
        # A direct-message channel belongs to one user; in a shared channel each user
        # has a conversation of their own, answered in that channel.
        sender = f"{event.channel}:{event.user}"
        inbound = Inbound(self.channel, sender, text, client_id(envelope.event_id))
        return Parsed((Incoming(inbound, Address(event.channel)),))

    def render(self, to: Address, reply: Reply) -> list[OutboundRequest]:
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"}
        text = options_text(reply.text, reply.buttons)
        return [
            OutboundRequest(
                f"{self._api}/chat.postMessage",
                {"channel": to.recipient, "text": piece},
                headers,
                what=f"slack chat.postMessage to {to.recipient}",
            )
            for piece in split_text(text, TEXT_LIMIT)
        ]

    def refused(self, response: httpx.Response) -> str | None:
        # Slack answers most errors with 200 and {"ok": false, "error": "channel_not_found"}
        try:
            body = response.json()
        except ValueError:
            return "the response is not JSON"
        if isinstance(body, dict) and body.get("ok") is True:
            return None
        error = body.get("error") if isinstance(body, dict) else None
        return str(error or "ok is not true")


def plain_text(text: str) -> str:
    """Slack's message markup as the customer saw it: mentions dropped, links as their
    labels (or targets), ``&amp;`` ``&lt;`` ``&gt;`` unescaped."""
    text = MENTION.sub("", text)
    text = LINK.sub(lambda m: m.group(2) or m.group(3), text)
    return html.unescape(text).strip()
