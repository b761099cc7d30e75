"""WhatsApp Cloud API: ``messages`` notifications arrive signed with the Meta app secret;
replies go out with ``POST /{phone_number_id}/messages`` from the number that received the
message. Up to three buttons become interactive reply buttons (their presses come back with
the button's id, our payload); more are listed under the text.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from pydantic import BaseModel, ConfigDict, Field

from channels.bridge import Inbound
from channels.messaging.meta import MetaApp
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

TEXT_LIMIT = 4096
BUTTON_BODY_LIMIT = 1024
MAX_BUTTONS = 3
BUTTON_TITLE_CHARS = 20
BUTTON_ID_CHARS = 256


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Text(_Wire):
    body: str


class _Choice(_Wire):
    id: str
    title: str


class _Interactive(_Wire):
    type: str
    button_reply: _Choice | None = None
    list_reply: _Choice | None = None


class _TemplateButton(_Wire):
    payload: str | None = None
    text: str | None = None


class _Message(_Wire):
    from_: str = Field(alias="from")
    id: str
    type: str
    text: _Text | None = None
    interactive: _Interactive | None = None
    button: _TemplateButton | None = None


class _Metadata(_Wire):
    phone_number_id: str


class _Value(_Wire):
    metadata: _Metadata | None = None
    messages: list[_Message] = []


class _Change(_Wire):
    field: str
    value: _Value


class _Entry(_Wire):
    changes: list[_Change] = []


class _Notification(_Wire):
    object: str
    entry: list[_Entry] = []


class WhatsApp(MetaApp):
    channel = "whatsapp"
    path = "/whatsapp/webhook"

    def parse(self, body: bytes, headers: Mapping[str, str]) -> Parsed:
        notification = _Notification.model_validate_json(body)
        if notification.object != "whatsapp_business_account":
            return Parsed()
        found: list[Incoming] = []
        for entry in notification.entry:
            for change in entry.changes:
                metadata = change.value.metadata
                if change.field != "messages" or metadata is None:
                    continue  # statuses (sent, delivered, read) come without messages
                for message in change.value.messages:
                    text = _text_of(message)
                    if text is None:
                        continue  # images, stickers, locations, reactions...
                    inbound = Inbound(self.channel, message.from_, text, client_id(message.id))
                    address = Address(message.from_, via=metadata.phone_number_id)
                    found.append(Incoming(inbound, address))
        return Parsed(tuple(found))

    def render(self, to: Address, reply: Reply) -> list[OutboundRequest]:
        url = f"{self._graph}/{to.via}/messages"
        headers = self._auth()
        what = f"whatsapp message to {to.recipient}"
        base: dict[str, object] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to.recipient,
        }
        with_buttons = 0 < len(reply.buttons) <= MAX_BUTTONS
        text = reply.text if with_buttons else options_text(reply.text, reply.buttons)
        pieces = split_text(text, BUTTON_BODY_LIMIT if with_buttons else TEXT_LIMIT)
        requests = []
        for i, piece in enumerate(pieces):
            if with_buttons and i == len(pieces) - 1:
                buttons = [
                    {
                        "type": "reply",
                        "reply": {
                            "id": _button_id(b.title, b.payload),
                            "title": b.title[:BUTTON_TITLE_CHARS],
                        },
                    }
                    for b in reply.buttons
                ]
                body = {
                    **base,
                    "type": "interactive",
                    "interactive": {
                        "type": "button",
                        "body": {"text": piece},
                        "action": {"buttons": buttons},
                    },
                }
            else:
                body = {**base, "type": "text", "text": {"preview_url": False, "body": piece}}
            requests.append(OutboundRequest(url, body, headers, what))
        return requests

    def refused(self, response: httpx.Response) -> str | None:
        return None  # the Graph API answers errors with 4xx/5xx statuses


def _text_of(message: _Message) -> str | None:
    """What the customer said: typed text, or the payload of a pressed button."""
    if message.type == "text" and message.text is not None:
        return message.text.body
    if message.type == "interactive" and message.interactive is not None:
        choice = message.interactive.button_reply or message.interactive.list_reply
        return choice.id if choice is not None else None
    if message.type == "button" and message.button is not None:  # a template's quick reply
        return message.button.payload or message.button.text
    return None


def _button_id(title: str, payload: str) -> str:
    """A pressed button sends its id back: the payload where it fits, else the title."""
    return payload if len(payload) <= BUTTON_ID_CHARS else title[:BUTTON_ID_CHARS]
