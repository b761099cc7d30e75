"""Customer messages proposed as new intent examples, for ``frontdesk tags review``:

- ``tag``: a customer message an agent tagged in the console with the intent the bot
  should have recognised (the proposal carries that intent);
- ``low_confidence``: a customer message the bot was unsure of (it asked back, or handed
  the conversation over for low confidence) that an agent then answered (no intent: the
  reviewer names it).

Messages decided before (``training.reviewed``) are not proposed again.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from bot.types import Role
from channels.chatlog_export import all_events
from channels.store import Store, StoredEvent

TAG, LOW_CONFIDENCE = "tag", "low_confidence"


@dataclass(frozen=True)
class Proposal:
    key: str
    """``conversation_id#seq``: the message, across reviews."""
    text: str
    intent: str | None
    source: str


def key_of(conversation_id: str, seq: int) -> str:
    return f"{conversation_id}#{seq}"


async def proposals(
    store: Store, *, decided: Collection[str] = (), since: datetime | None = None
) -> list[Proposal]:
    """Every proposal of the store's conversations (updated or tagged since ``since``;
    all: None), tags first, each message once, none of ``decided``."""
    tags: list[Proposal] = []
    unsure: list[Proposal] = []
    seen = set(decided)
    after = ""
    while page := await store.conversations_page(since=since, after_id=after, limit=500):
        for record in page:
            events = await all_events(store, record.id)
            texts = {e.seq: e.text for e in events if e.role is Role.CUSTOMER and e.text}
            for tag in await store.intent_tags_of(record.id):
                key = key_of(record.id, tag.seq)
                if key not in seen and tag.seq in texts:
                    seen.add(key)
                    tags.append(Proposal(key, texts[tag.seq] or "", tag.intent, TAG))
            for event in unsure_and_answered(events):
                key = key_of(record.id, event.seq)
                if key not in seen:
                    seen.add(key)
                    unsure.append(Proposal(key, event.text or "", None, LOW_CONFIDENCE))
        after = page[-1].id
    return tags + unsure


def unsure_about(event: StoredEvent) -> int | None:
    """The seq of the customer message a bot message shows the bot unsure of (it asked
    which was meant, or handed over for low confidence), else None."""
    if event.role is not Role.BOT:
        return None
    decision = event.payload.get("decision")
    unsure = decision == "clarify" or (
        decision == "escalate" and event.payload.get("reason") == "low_confidence"
    )
    asked = event.payload.get("in_reply_to")
    return asked if unsure and isinstance(asked, int) else None


def unsure_and_answered(events: list[StoredEvent]) -> list[StoredEvent]:
    """The customer messages the bot answered unsure (a ``clarify``, or a hand-over for
    low confidence), when an agent wrote in the conversation after them."""
    by_seq = {e.seq: e for e in events}
    unsure: list[StoredEvent] = []
    picked: set[int] = set()
    for event in events:
        asked = unsure_about(event)
        if asked is not None and asked in by_seq:
            message = by_seq[asked]
            if message.role is Role.CUSTOMER and message.text and message.seq not in picked:
                picked.add(message.seq)
                unsure.append(message)
    answered_after = [e.seq for e in events if e.role is Role.AGENT]
    last_agent = max(answered_after, default=-1)
    return [m for m in unsure if m.seq < last_agent]
