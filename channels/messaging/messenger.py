"""Facebook Messenger (Messenger Platform): ``messages`` and ``messaging_postbacks`` arrive
signed with the Meta app secret; replies go out with ``POST /me/messages`` and the page access
token. Buttons become quick replies, whose payload comes back with the customer's tap.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from pydantic import BaseModel, ConfigDict

from channels.bridge import Inbound
from channels.messaging.meta import MetaApp
from channels.messaging.provider import (
    Address,
    Incoming,
    OutboundRequest,
    Parsed,
    Reply,
    client_id,
    split_text,
)

TEXT_LIMIT = 2000
MAX_QUICK_REPLIES = 13
QUICK_REPLY_TITLE_CHARS = 20
QUICK_REPLY_PAYLOAD_CHARS = 1000


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Id(_Wire):
    id: str


class _QuickReply(_Wire):
    payload: str


class _Message(_Wire):
    mid: str
    text: str | None = None
    is_echo: bool = False
    quick_reply: _QuickReply | None = None


class _Postback(_Wire):
    mid: str | None = None
    title: str | None = None
    payload: str | None = None


class _Messaging(_Wire):
    sender: _Id
    timestamp: int = 0
    message: _Message | None = None
    postback: _Postback | None = None


class _Entry(_Wire):
    messaging: list[_Messaging] = []


class _Notification(_Wire):
    object: str
    entry: list[_Entry] = []


class Messenger(MetaApp):
    channel = "messenger"
    path = "/messenger/webhook"

    def parse(self, body: bytes, headers: Mapping[str, str]) -> Parsed:
        notification = _Notification.model_validate_json(body)
        if notification.object != "page":
            return Parsed()
        found: list[Incoming] = []
        for entry in notification.entry:
            for item in entry.messaging:
                said = _said(item)
                if said is None:
                    continue  # echoes of our replies, deliveries, reads, attachments...
                text, message_id = said
                psid = item.sender.id
                inbound = Inbound(self.channel, psid, text, client_id(message_id))
                found.append(Incoming(inbound, Address(psid)))
        return Parsed(tuple(found))

    def render(self, to: Address, reply: Reply) -> list[OutboundRequest]:
        url = f"{self._graph}/me/messages"
        headers = self._auth()
        pieces = split_text(reply.text, TEXT_LIMIT)
        requests = []
        for i, piece in enumerate(pieces):
            message: dict[str, object] = {"text": piece}
            if reply.buttons and i == len(pieces) - 1:
                message["quick_replies"] = [
                    {
                        "content_type": "text",
                        "title": b.title[:QUICK_REPLY_TITLE_CHARS],
                        "payload": b.payload[:QUICK_REPLY_PAYLOAD_CHARS],
                    }
                    for b in reply.buttons[:MAX_QUICK_REPLIES]
                ]
            body = {
                "recipient": {"id": to.recipient},
                "messaging_type": "RESPONSE",
                "message": message,
            }
            requests.append(
                OutboundRequest(url, body, headers, f"messenger message to {to.recipient}")
            )
        return requests

    def refused(self, response: httpx.Response) -> str | None:
        return None  # the Graph API answers errors with 4xx/5xx statuses


def _said(item: _Messaging) -> tuple[str, str] | None:
    """(text, message id) of a customer's message or button tap, else ``None``."""
    message = item.message
    if message is not None:
        if message.is_echo:
            return None
        if message.quick_reply is not None:
            return message.quick_reply.payload, message.mid
        if message.text:
            return message.text, message.mid
        return None
    postback = item.postback
    if postback is not None and (postback.payload or postback.title):
        # postbacks carry a mid since Graph API v8; older ones are told apart by their time
        message_id = postback.mid or f"postback:{item.timestamp}"
        return postback.payload or postback.title or "", message_id
    return None
