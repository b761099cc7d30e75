"""What every messaging provider is: the shapes it turns webhooks into and replies out of."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from pydantic import SecretStr

from bot.types import Button
from channels.bridge import Inbound
from channels.errors import ChannelError
from channels.messaging.signatures import Verdict
from channels.store import CLIENT_ID_MAX_CHARS, StoredEvent


class IncompleteSettings(ChannelError):
    """A provider has some of its settings but not all: it would fail on the first message."""

    code = "incomplete_settings"


@dataclass(frozen=True)
class Address:
    """Where replies to a customer go on the provider."""

    recipient: str
    """Telegram chat id, Slack channel, WhatsApp id (phone number), Messenger page-scoped id."""
    via: str | None = None
    """The business's own id, where the provider needs it: WhatsApp's phone number id."""


@dataclass(frozen=True)
class OutboundRequest:
    """One call to a provider's API (a JSON POST)."""

    url: str
    body: Mapping[str, object]
    """The provider's JSON: the wire format, built and sent in this package only."""
    headers: Mapping[str, str] = field(default_factory=dict)
    what: str = ""
    """How logs name this call; never the URL (Telegram puts the bot token in it)."""


@dataclass(frozen=True)
class Incoming:
    """One customer message from a webhook, and where to answer it."""

    inbound: Inbound
    address: Address
    acks: tuple[OutboundRequest, ...] = ()
    """Calls that acknowledge the message itself, sent once when it is accepted (Telegram's
    ``answerCallbackQuery`` stops the spinner on a pressed button)."""


@dataclass(frozen=True)
class Parsed:
    """What a verified webhook body holds."""

    messages: tuple[Incoming, ...] = ()
    challenge: str | None = None
    """Slack's ``url_verification``: answered with ``{"challenge": ...}``, nothing else."""


@dataclass(frozen=True)
class Reply:
    """One bot message to send."""

    text: str
    buttons: tuple[Button, ...] = ()


class Provider(Protocol):
    channel: str
    """The bridge's channel name (``telegram``...), also the conversation's ``channel``."""
    path: str
    """The webhook's path under ``/webhooks``."""
    verify_token: SecretStr | None
    """Meta's subscription handshake token; ``None`` where the provider has no handshake."""

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verdict:
        """Check the request's signature on the raw ``body`` (``now``: Unix seconds)."""
        ...

    def parse(self, body: bytes, headers: Mapping[str, str]) -> Parsed:
        """Turn a verified body into messages; raises ``ValueError`` on a malformed body."""
        ...

    def render(self, to: Address, reply: Reply) -> list[OutboundRequest]:
        """The API calls that send ``reply`` to ``to``, in order."""
        ...

    def refused(self, response: httpx.Response) -> str | None:
        """Why a successful HTTP response still means the provider refused the call."""
        ...


def reply_of(event: StoredEvent) -> Reply:
    """A stored bot message as a reply (its ``payload["buttons"]`` as buttons)."""
    raw = event.payload.get("buttons")
    buttons: list[Button] = []
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        for item in raw:
            if isinstance(item, Mapping):
                title, payload = item.get("title"), item.get("payload")
                if isinstance(title, str) and isinstance(payload, str):
                    buttons.append(Button(title, payload))
    return Reply(event.text or "", tuple(buttons))


def client_id(provider_id: str) -> str:
    """A provider's message id as the bridge's message id (hashed when it is too long)."""
    if len(provider_id) <= CLIENT_ID_MAX_CHARS:
        return provider_id
    return "sha256:" + hashlib.sha256(provider_id.encode("utf-8")).hexdigest()


def split_text(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at whitespace where possible."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit + 1)
        if cut <= 0:
            cut = rest.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    pieces.append(rest)
    return pieces


def clip_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` that takes at most ``max_bytes`` in UTF-8."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def options_text(text: str, buttons: Sequence[Button]) -> str:
    """``text`` with the buttons' titles listed below it, where a provider can't show them."""
    if not buttons:
        return text
    return text + "\n\n" + "\n".join(f"• {b.title}" for b in buttons)
