"""Telegram Bot API: updates arrive at the webhook set with ``setWebhook`` (with a
``secret_token``), replies go out with ``sendMessage``; buttons become an inline keyboard
whose presses come back as ``callback_query`` updates carrying the button's payload.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from channels.bridge import Inbound
from channels.messaging.provider import (
    Address,
    Incoming,
    OutboundRequest,
    Parsed,
    Reply,
    clip_utf8,
    split_text,
)
from channels.messaging.signatures import Verdict, check_secret_token

SECRET_HEADER = "x-telegram-bot-api-secret-token"
TEXT_LIMIT = 4096
CALLBACK_DATA_BYTES = 64


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Chat(_Wire):
    id: int


class _User(_Wire):
    id: int
    is_bot: bool = False


class _Message(_Wire):
    message_id: int
    chat: _Chat
    from_: _User | None = Field(default=None, alias="from")
    text: str | None = None


class _CallbackQuery(_Wire):
    id: str
    from_: _User = Field(alias="from")
    message: _Message | None = None
    data: str | None = None


class _Update(_Wire):
    update_id: int
    message: _Message | None = None
    callback_query: _CallbackQuery | None = None


class Telegram:
    channel = "telegram"
    path = "/telegram/webhook"
    verify_token: SecretStr | None = None

    def __init__(self, bot_token: SecretStr, secret_token: SecretStr, api_url: str) -> None:
        self._secret = secret_token
        self._api = f"{api_url.rstrip('/')}/bot{bot_token.get_secret_value()}"

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verdict:
        return check_secret_token(self._secret.get_secret_value(), headers.get(SECRET_HEADER))

    def parse(self, body: bytes, headers: Mapping[str, str]) -> Parsed:
        update = _Update.model_validate_json(body)
        message = update.message
        if message is not None:
            sender = message.from_
            if message.text is None or (sender is not None and sender.is_bot):
                return Parsed()  # stickers, photos, joins, other bots
            chat = str(message.chat.id)
            # message ids are unique within a chat, and a chat is one conversation
            inbound = Inbound(self.channel, chat, message.text, f"m{message.message_id}")
            return Parsed((Incoming(inbound, Address(chat)),))
        query = update.callback_query
        if query is not None and query.data is not None and query.message is not None:
            chat = str(query.message.chat.id)
            inbound = Inbound(self.channel, chat, query.data, f"cb{query.id}")
            ack = OutboundRequest(
                f"{self._api}/answerCallbackQuery",
                {"callback_query_id": query.id},
                what=f"telegram answerCallbackQuery {query.id}",
            )
            return Parsed((Incoming(inbound, Address(chat), acks=(ack,)),))
        return Parsed()  # edited messages, channel posts, member updates...

    def render(self, to: Address, reply: Reply) -> list[OutboundRequest]:
        pieces = split_text(reply.text, TEXT_LIMIT)
        chat_id: int | str = int(to.recipient) if _is_int(to.recipient) else to.recipient
        requests = []
        for i, piece in enumerate(pieces):
            body: dict[str, object] = {"chat_id": chat_id, "text": piece}
            if reply.buttons and i == len(pieces) - 1:
                body["reply_markup"] = {
                    "inline_keyboard": [
                        [{"text": b.title, "callback_data": _callback_data(b.title, b.payload)}]
                        for b in reply.buttons
                    ]
                }
            requests.append(
                OutboundRequest(
                    f"{self._api}/sendMessage",
                    body,
                    what=f"telegram sendMessage to chat {to.recipient}",
                )
            )
        return requests

    def refused(self, response: httpx.Response) -> str | None:
        return None  # the Bot API answers errors with 4xx/5xx statuses


def _callback_data(title: str, payload: str) -> str:
    """Telegram carries at most 64 bytes back from a pressed button: the payload where it
    fits, else the title (which the bot understands as a customer message too)."""
    if len(payload.encode("utf-8")) <= CALLBACK_DATA_BYTES:
        return payload
    return clip_utf8(title, CALLBACK_DATA_BYTES)


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True
