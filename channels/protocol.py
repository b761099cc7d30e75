"""Wire format of the widget websocket ``/ws/chat`` (DESIGN §7). Pydantic lives here only."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from channels.errors import BadFrame
from channels.store import StoredEvent
from channels.store import clean_id as is_clean_id

CLIENT_ID_MAX = 64
SEEN_WINDOW = 1024
"""How many of the newest sequence numbers a connection remembers having delivered."""
SEQ_MAX = 2**31 - 1
"""The largest sequence number a client may name (the store's integer column)."""


def clean_id(value: str) -> str:
    """An id must be text a store and a JSON encoder can hold (``store.clean_id``)."""
    if not is_clean_id(value):
        raise ValueError("must hold no control characters or lone surrogates")
    return value


def clean_text(value: str) -> str:
    """Text as stored and echoed: NUL and lone surrogates become U+FFFD."""
    if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value):
        value = "".join("\ufffd" if c == "\x00" or "\ud800" <= c <= "\udfff" else c for c in value)
    return value


ClientId = Annotated[
    str, StringConstraints(min_length=1, max_length=CLIENT_ID_MAX), AfterValidator(clean_id)
]
Id = Annotated[
    str, StringConstraints(min_length=1, max_length=CLIENT_ID_MAX), AfterValidator(clean_id)
]


class RecentSeqs:
    """The sequence numbers last delivered on one connection, at most ``size`` of them: an
    event that comes twice (a replay overlapping the live feed, an answer the bus carries
    too) is delivered once, and a long conversation does not grow the memory without bound
    (the copies of one event arrive close together)."""

    __slots__ = ("_seen", "size")

    def __init__(self, size: int = SEEN_WINDOW) -> None:
        self._seen: OrderedDict[int, None] = OrderedDict()
        self.size = size

    def claim(self, seq: int) -> bool:
        """True the first time ``seq`` is claimed (while it is among the newest ``size``)."""
        if seq in self._seen:
            return False
        self._seen[seq] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True

    def clear(self) -> None:
        self._seen.clear()

    def __len__(self) -> int:
        return len(self._seen)


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hello(_Frame):
    type: Literal["hello"]
    conversation_id: Id | None = None
    token: Annotated[str, StringConstraints(max_length=256), AfterValidator(clean_id)] | None = None
    last_seq: Annotated[int, Field(ge=0, le=SEQ_MAX)] = 0


class MessageIn(_Frame):
    type: Literal["message"]
    client_id: ClientId
    text: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1), AfterValidator(clean_text)
    ]


class TypingIn(_Frame):
    """The customer is typing: shown to the agent handling the conversation."""

    type: Literal["typing"]


class RateIn(_Frame):
    """The customer's rating of a closed conversation (1 to 5 stars)."""

    type: Literal["rate"]
    stars: Annotated[int, Field(ge=1, le=5)]


ClientFrameType = Hello | MessageIn | TypingIn | RateIn
ClientFrame = Annotated[ClientFrameType, Field(discriminator="type")]
_client_frame: TypeAdapter[ClientFrameType] = TypeAdapter(ClientFrame)


def parse_client_frame(raw: str | bytes, max_text_chars: int) -> ClientFrameType:
    """Parse one client frame or raise :class:`BadFrame` saying what was expected."""
    try:
        frame = _client_frame.validate_json(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "frame"
        raise BadFrame(
            f"{where}: {err['msg']}; expected a JSON object like "
            '{"type": "hello", ...} or {"type": "message", "client_id": "...", "text": "..."}',
            client_id=_refused_message_id(raw),
        ) from exc
    if isinstance(frame, MessageIn) and len(frame.text) > max_text_chars:
        raise BadFrame(
            f"text: at most {max_text_chars} characters, got {len(frame.text)}",
            client_id=frame.client_id,
        )
    return frame


def _refused_message_id(raw: str | bytes) -> str | None:
    """The ``client_id`` of a refused ``message`` frame, where it has a usable one."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python parses
        return None
    if not isinstance(data, dict) or data.get("type") != "message":
        return None
    client_id = data.get("client_id")
    if not isinstance(client_id, str) or not 0 < len(client_id) <= CLIENT_ID_MAX:
        return None
    try:
        return clean_id(client_id)
    except ValueError:  # not echoed: a frame with it could not be sent
        return None


def welcome(conversation_id: str, token: str, seq: int, max_text_chars: int) -> dict[str, Any]:
    return {
        "type": "welcome",
        "conversation_id": conversation_id,
        "token": token,
        "seq": seq,
        "max_text_chars": max_text_chars,
    }


def ack(client_id: str, seq: int) -> dict[str, Any]:
    return {"type": "ack", "client_id": client_id, "seq": seq}


def rated(stars: int) -> dict[str, Any]:
    return {"type": "rated", "stars": stars}


def typing(role: str = "bot") -> dict[str, Any]:
    return {"type": "typing", "role": role}


def error(code: str, message: str, client_id: str | None = None) -> dict[str, Any]:
    frame = {"type": "error", "code": code, "message": message}
    if client_id is not None:  # the refused message: the client drops it from its outbox
        frame["client_id"] = client_id
    return frame


def event_frame(event: StoredEvent) -> dict[str, Any]:
    """A stored event as the client sees it."""
    if event.kind == "status":
        return {
            "type": "status",
            "seq": event.seq,
            "status": event.payload.get("status"),
            "reason": event.payload.get("reason"),
        }
    frame: dict[str, Any] = {
        "type": "message",
        "seq": event.seq,
        "role": event.role.value if event.role else None,
        "text": event.text,
    }
    buttons = event.payload.get("buttons")
    if buttons:
        frame["buttons"] = buttons
    if event.client_id is not None:
        frame["client_id"] = event.client_id
    in_reply_to = event.payload.get("in_reply_to")
    if isinstance(in_reply_to, int):  # the customer message a bot or agent message answers
        frame["in_reply_to"] = in_reply_to
    return frame
