"""The console's wire format: request bodies (pydantic) and the JSON it answers with."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from channels.console.desk import Canned, History, Suggestion, ToTag
from channels.store import AgentRecord, ConversationRecord, DeskNumbers, IntentTag, QueueEntry

Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
    AfterValidator(lambda v: _utf8(v)),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _utf8(value: str) -> str:
    """Text a store can hold and a hash can read: no lone surrogates, no NUL."""
    if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value):
        raise ValueError("must hold no NUL characters or lone surrogates")
    return value


class LoginIn(_Body):
    email: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=3, max_length=254),
        AfterValidator(_utf8),
    ]
    password: Annotated[
        str, StringConstraints(min_length=1, max_length=1024), AfterValidator(_utf8)
    ]


class ReplyIn(_Body):
    text: Text
    in_reply_to: Annotated[int, Field(ge=1)] | None = None
    """The customer message's seq; default: the last customer message."""
    source: Literal["retrieval", "intent", "canned"] | None = None
    """Where the text came from, when the agent started from a suggestion."""


class TagIn(_Body):
    seq: Annotated[int, Field(ge=1)]
    intent: Annotated[
        str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.\-]{1,100}$")
    ]


def when(value: datetime) -> str:
    return value.isoformat()


def agent(record: AgentRecord) -> dict[str, Any]:
    return {"id": record.id, "email": record.email, "name": record.name, "role": record.role}


def queue_entry(entry: QueueEntry) -> dict[str, Any]:
    return {
        "conversation_id": entry.conversation_id,
        "channel": entry.channel,
        "waiting_since": when(entry.waiting_since),
        "reason": entry.reason,
        "last_customer_text": entry.last_customer_text,
        "last_seq": entry.last_seq,
    }


def conversation(record: ConversationRecord) -> dict[str, Any]:
    return {
        "conversation_id": record.id,
        "channel": record.channel,
        "status": record.status.value,
        "created_at": when(record.created_at),
        "updated_at": when(record.updated_at),
        "last_seq": record.last_seq,
    }


def tag(value: IntentTag) -> dict[str, Any]:
    return {"seq": value.seq, "intent": value.intent, "agent_id": value.agent_id}


def history(value: History) -> dict[str, Any]:
    return {
        **conversation(value.conversation),
        "agent_id": value.agent_id,
        "events": [
            {
                "seq": e.seq,
                "kind": e.kind,
                "role": None if e.role is None else e.role.value,
                "text": e.text,
                "created_at": when(e.created_at),
                "payload": dict(e.payload),
            }
            for e in value.events
        ],
        "tags": [tag(t) for t in value.tags],
    }


def suggestion(value: Suggestion) -> dict[str, Any]:
    return {
        "text": value.text,
        "source": value.source,
        "score": round(value.score, 4),
        "intent": value.intent,
    }


def to_tag(value: ToTag) -> dict[str, Any]:
    return {
        "conversation_id": value.conversation_id,
        "seq": value.seq,
        "text": value.text,
        "created_at": when(value.created_at),
        "why": value.why,
    }


def canned(value: Canned) -> dict[str, Any]:
    return {"title": value.title, "text": value.text}


def numbers(value: DeskNumbers) -> dict[str, Any]:
    return {
        "queue_length": value.queue_length,
        "taken": value.taken,
        "average_wait_s": value.average_wait_s,
        "average_handle_s": value.average_handle_s,
        "escalations": dict(value.escalations),
        "average_rating": value.average_rating,
        "ratings": value.ratings,
    }
