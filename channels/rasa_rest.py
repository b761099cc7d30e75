"""The REST channel, compatible with Rasa's ``POST /webhooks/rest/webhook`` (DESIGN §7).

A client posts ``{"sender": ..., "message": ...}`` and gets the bot's answer to that message
in the response: ``[{"recipient_id": sender, "text": ..., "buttons": [...]}]``, one entry per
bot message (an empty list while a person handles the conversation). Rasa's REST channel has
no message id, so a retry would be a second message; a client that retries sends
``metadata.message_id`` and the retry is then stored and answered once only.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from channels.bridge import Inbound
from channels.errors import ChannelError
from channels.runtime import Runtime
from channels.store import CLIENT_ID_MAX_CHARS, EXTERNAL_ID_MAX_CHARS, StoredEvent

CHANNEL = "rest"

EXAMPLE = '{"sender": "customer-42", "message": "where is my order?"}'


class RestMetadata(BaseModel):
    """Rasa passes ``metadata`` through untouched; we read ``message_id`` from it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    message_id: (
        Annotated[str, StringConstraints(min_length=1, max_length=CLIENT_ID_MAX_CHARS)] | None
    ) = None


class RestMessage(BaseModel):
    # Rasa clients may send more (``input_channel``, ...): ignored, as Rasa does.
    model_config = ConfigDict(extra="ignore", frozen=True)

    sender: Annotated[str, StringConstraints(min_length=1, max_length=EXTERNAL_ID_MAX_CHARS)]
    """The customer's id: the same sender is the same conversation (1 to 200 characters)."""
    message: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    metadata: RestMetadata | None = None


class RestButton(BaseModel):
    title: str
    payload: str


class RestReply(BaseModel):
    recipient_id: str
    text: str
    buttons: list[RestButton] | None = None


router = APIRouter(prefix="/webhooks/rest", tags=["rasa"])


@router.get("/")
async def health() -> dict[str, str]:
    """Rasa's channel health check."""
    return {"status": "ok"}


@router.post("/webhook", response_model=list[RestReply], response_model_exclude_none=True)
async def webhook(request: Request) -> list[RestReply]:
    """Store the customer's message, let the bot answer it and return what it said."""
    runtime: Runtime = request.app.state.runtime
    body = await _read_body(request, runtime.settings.max_frame_bytes)
    message = parse_message(body, runtime.settings.max_text_chars)
    message_id = (message.metadata and message.metadata.message_id) or uuid.uuid4().hex
    inbound = Inbound(CHANNEL, message.sender, message.message, message_id)
    try:
        event, created = await runtime.bridge.receive(inbound)
    except ValueError as exc:  # the store's limits (a sender longer than 200 characters)
        raise HTTPException(400, f"{exc}; see {EXAMPLE}") from exc
    except ChannelError as exc:
        raise HTTPException(409, str(exc)) from exc
    # a retry of a message already stored is answered once only; the retry gets the answer
    # (given now if a crash came before it was)
    replies = await runtime.bridge.answer(event, redelivered=not created)
    return [reply(message.sender, e) for e in replies]


def parse_message(body: bytes, max_text_chars: int) -> RestMessage:
    """Validate a webhook body or raise a 422 saying what was expected."""
    try:
        message = RestMessage.model_validate_json(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise HTTPException(
            422, f"{where}: {err['msg']}; expected a JSON object like {EXAMPLE}"
        ) from exc
    if len(message.message) > max_text_chars:
        raise HTTPException(
            422, f"message: at most {max_text_chars} characters, got {len(message.message)}"
        )
    return message


def reply(recipient_id: str, event: StoredEvent) -> RestReply:
    """A bot message in Rasa's REST shape."""
    buttons = stored_buttons(event.payload.get("buttons"))
    return RestReply(recipient_id=recipient_id, text=event.text or "", buttons=buttons or None)


def stored_buttons(raw: object) -> list[RestButton]:
    """The buttons of a stored bot message or bus frame (``[{title, payload}]``), if any."""
    if not isinstance(raw, list):
        return []
    return [
        RestButton(title=b["title"], payload=b["payload"])
        for b in raw
        if isinstance(b, dict)
        and isinstance(b.get("title"), str)
        and isinstance(b.get("payload"), str)
    ]


async def _read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 past ``max_bytes`` (read no further than that)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(413, f"request body larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
