"""Channels that are not the widget (the Rasa REST and Socket.IO channels, messaging apps)
meet the conversation service here: a provider's customer id becomes a conversation, a
provider's message id becomes the client id that makes redelivery harmless (DESIGN §2).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.types import Role
from channels.service import ConversationService, utc_now
from channels.store import StoredEvent

ANSWER_LIMIT = 50
"""The most bot messages one customer message is answered with (an action may say several)."""


@dataclass(frozen=True)
class Inbound:
    """One customer message as a channel received it."""

    channel: str
    """``rest``, ``socketio``, ``telegram``, ``slack``, ``whatsapp``, ``messenger``."""
    sender: str
    """The provider's id of the customer (chat id, phone number, page-scoped id...)."""
    text: str
    message_id: str
    """The provider's id of this message: the same id twice is one message."""


class ChannelBridge:
    def __init__(self, service: ConversationService) -> None:
        self.service = service
        self.store = service.store

    async def receive(self, inbound: Inbound) -> tuple[StoredEvent, bool]:
        """Persist ``inbound`` in its sender's conversation: (its event, whether it is new;
        False for a redelivery of a message accepted before)."""
        record = await self.store.conversation_for(inbound.channel, inbound.sender, utc_now())
        return await self.service.accept(record.id, inbound.message_id, inbound.text)

    async def answer(self, event: StoredEvent, *, redelivered: bool = False) -> list[StoredEvent]:
        """Let the bot answer ``event`` (in order with the conversation's other messages)
        and return what it said in reply: empty when a person handles the conversation. A
        ``redelivered`` message is answered only if it has no answer yet (a crash came
        between its first delivery and its answer); either way its replies are returned."""
        if redelivered:
            await self.service.catch_up(event)
        else:
            await self.service.respond(event)
        return await self.replies_to(event)

    async def replies_to(self, event: StoredEvent) -> list[StoredEvent]:
        """What the bot said in reply to ``event``, as stored."""
        later = await self.store.events_after(event.conversation_id, event.seq, ANSWER_LIMIT)
        return [
            e
            for e in later
            if e.kind == "message"
            and e.role is Role.BOT
            and e.payload.get("in_reply_to") == event.seq
        ]
