"""Desk operations: what an agent does to a conversation. Every change is stored first,
then published on the bus (``protocol.event_frame``) so the customer's widget and the other
agents' consoles see it live; the store stays the source of truth (DESIGN §5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.errors import IllegalTransition
from bot.types import ConversationStatus, Role
from channels import protocol
from channels.bus import QUEUE_TOPIC
from channels.console.errors import Conflict, Forbidden, Invalid, NotFound
from channels.runtime import Runtime
from channels.service import HISTORY_TURNS
from channels.store import (
    AgentRecord,
    AgentRole,
    ConversationRecord,
    DeskNumbers,
    IntentTag,
    QueueEntry,
    StoredEvent,
    UnknownConversation,
)
from channels.tag_proposals import unsure_about
from retrieval.pairs import message_window

CANNED_FILE: Final = "canned.yml"
SUGGESTIONS: Final = 5
INTENT_SUGGESTIONS: Final = 3
STATS_WINDOW: Final = timedelta(hours=24)
TO_TAG: Final = 50
TO_TAG_SCAN: Final = 2000
"""How many of the bot's latest messages the to-tag queue looks through."""


@dataclass(frozen=True)
class Suggestion:
    text: str
    source: str
    """``retrieval`` (what an agent answered to a similar turn) or ``intent`` (the response
    of an intent the model recognised)."""
    score: float
    intent: str | None = None


@dataclass(frozen=True)
class ToTag:
    """A customer message the bot was unsure of, for an agent to tag (active learning)."""

    conversation_id: str
    seq: int
    text: str
    created_at: datetime
    why: str
    """``clarify`` (the bot asked which was meant) or ``low_confidence`` (it handed over)."""


@dataclass(frozen=True)
class Canned:
    title: str
    text: str


@dataclass(frozen=True)
class History:
    conversation: ConversationRecord
    events: list[StoredEvent]
    tags: list[IntentTag]
    agent_id: str | None


class _CannedEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    title: str = Field(min_length=1, max_length=80)
    text: str = Field(min_length=1, max_length=2000)


class Desk:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.bus = runtime.bus
        self.clock = runtime.service.clock

    async def queue(self) -> list[QueueEntry]:
        return await self.store.waiting_queue()

    async def mine(self, agent: AgentRecord) -> list[ConversationRecord]:
        return await self.store.agent_conversations(agent.id)

    async def take(self, conversation_id: str, agent: AgentRecord) -> StoredEvent:
        """Take a waiting conversation; :class:`Conflict` if it is not waiting (any more)."""
        # The store does it as one conditional UPDATE (the waiting -> agent transition of
        # bot.types.ConversationStatus, checked here for its error message).
        record = await self._conversation(conversation_id)
        if record.status is not ConversationStatus.WAITING:
            raise Conflict(
                f"conversation {conversation_id} is {record.status.value!r}, not waiting: "
                "someone else took it, or it was closed"
            )
        record.status.check_transition(ConversationStatus.AGENT)
        event = await self.store.take_conversation(conversation_id, agent.id, self.clock())
        if event is None:
            raise Conflict(f"conversation {conversation_id} was taken by another agent first")
        await self._published(event)
        return event

    async def history(self, conversation_id: str, agent: AgentRecord) -> History:
        record = await self.readable(conversation_id, agent)
        events: list[StoredEvent] = []
        after = 0
        while page := await self.store.events_after(conversation_id, after):
            events.extend(page)
            after = page[-1].seq
        tags = await self.store.intent_tags_of(conversation_id)
        return History(record, events, tags, await self.store.assigned_agent(conversation_id))

    async def suggestions(self, conversation_id: str, agent: AgentRecord) -> list[Suggestion]:
        """The bot's ranked replies to the last customer message (agent assist): the agent
        replies retrieved from past chats and the top intents' responses, best first."""
        await self.readable(conversation_id, agent)
        last = await self.store.last_customer_message(conversation_id)
        if last is None or not last.text:
            return []
        turns = await self.store.recent_turns(conversation_id, HISTORY_TURNS, before_seq=last.seq)
        window = message_window([(t.role.value, t.text) for t in turns], last.text)
        outputs = await self.runtime.batcher.analyze(last.text, window)
        found = [Suggestion(c.text, "retrieval", c.score) for c in outputs.candidates]
        definition = self.runtime.definition
        for score in outputs.intents[:INTENT_SUGGESTIONS]:
            try:
                intent = definition.intent(score.name)
            except KeyError:
                continue  # a model trained for other intents (a swap in progress)
            if intent.name == definition.human_intent or intent.escalate:
                continue  # "I'll pass you to a person" is no answer for the person
            response = definition.response_for(intent)
            if response is not None and response.variants:
                text = response.variants[0].text
                found.append(Suggestion(text, "intent", score.probability, intent.name))
        found.sort(key=lambda s: s.score, reverse=True)
        seen: set[str] = set()
        best: list[Suggestion] = []
        for suggestion in found:
            key = " ".join(suggestion.text.lower().split())
            if key not in seen:
                seen.add(key)
                best.append(suggestion)
        return best[:SUGGESTIONS]

    async def reply(
        self,
        conversation_id: str,
        agent: AgentRecord,
        text: str,
        in_reply_to: int | None,
        source: str | None,
    ) -> StoredEvent:
        """An agent message, linked to the customer turn it answers (the last one unless
        ``in_reply_to`` names another): labelled data for the retrain loop."""
        await self._handling(conversation_id, agent)
        if in_reply_to is None:
            last = await self.store.last_customer_message(conversation_id)
            in_reply_to = None if last is None else last.seq
        elif await self.store.customer_message(conversation_id, in_reply_to) is None:
            raise Invalid(f"in_reply_to: seq {in_reply_to} is not a customer message here")
        payload: dict[str, object] = {
            "in_reply_to": in_reply_to,
            "agent_id": agent.id,
            "agent_name": agent.name,
        }
        if source is not None:
            payload["suggestion"] = source
        event = await self.store.append_event(
            conversation_id,
            kind="message",
            role=Role.AGENT,
            text=text,
            payload=payload,
            now=self.clock(),
        )
        self.runtime.metrics.messages.labels("out").inc()
        await self.bus.publish(conversation_id, protocol.event_frame(event))
        record = await self.store.get_conversation(conversation_id)
        if record is not None:  # a messaging-app customer gets it through the provider
            await self.runtime.messaging.relay(record.channel, event)
        return event

    async def typing(self, conversation_id: str, agent: AgentRecord) -> None:
        await self._handling(conversation_id, agent)
        await self.bus.publish(conversation_id, protocol.typing(Role.AGENT.value))

    async def tag(
        self, conversation_id: str, agent: AgentRecord, seq: int, intent: str
    ) -> IntentTag:
        await self.readable(conversation_id, agent)
        try:
            return await self.store.tag_intent(conversation_id, seq, intent, agent.id, self.clock())
        except ValueError as exc:
            raise Invalid(str(exc)) from None

    async def to_tag(self, limit: int = TO_TAG, scan: int = TO_TAG_SCAN) -> list[ToTag]:
        """The latest customer messages the bot was unsure of (it asked back, or handed
        over for low confidence) that nobody has tagged yet, newest first: what tagging
        teaches the bot most (``frontdesk tags review`` turns tags into examples)."""
        found: list[ToTag] = []
        seen: set[tuple[str, int]] = set()
        tagged: dict[str, set[int]] = {}
        for bot in await self.store.recent_bot_messages(scan):
            asked = unsure_about(bot)
            if asked is None or (bot.conversation_id, asked) in seen:
                continue
            seen.add((bot.conversation_id, asked))
            if bot.conversation_id not in tagged:
                tags = await self.store.intent_tags_of(bot.conversation_id)
                tagged[bot.conversation_id] = {t.seq for t in tags}
            if asked in tagged[bot.conversation_id]:
                continue
            message = await self.store.customer_message(bot.conversation_id, asked)
            if message is None or not message.text:
                continue
            why = "clarify" if bot.payload.get("decision") == "clarify" else "low_confidence"
            found.append(ToTag(bot.conversation_id, asked, message.text, message.created_at, why))
            if len(found) >= limit:
                break
        return found

    async def hand_back(self, conversation_id: str, agent: AgentRecord) -> StoredEvent:
        """Back to the bot: it answers the customer's next message again."""
        await self._handling(conversation_id, agent, waiting_too=True)
        return await self._move(conversation_id, ConversationStatus.BOT, "handed_back", agent)

    async def close(self, conversation_id: str, agent: AgentRecord) -> StoredEvent:
        await self._handling(conversation_id, agent, waiting_too=True)
        return await self._move(conversation_id, ConversationStatus.CLOSED, "closed", agent)

    async def numbers(self) -> DeskNumbers:
        return await self.store.desk_numbers(self.clock() - STATS_WINDOW)

    def canned(self) -> list[Canned]:
        """Canned responses: the bot folder's ``canned.yml`` (a list of ``{title, text}``)."""
        root = self.runtime.definition.root or self.runtime.settings.bot
        return load_canned(Path(root) / CANNED_FILE)

    async def _move(
        self, conversation_id: str, status: ConversationStatus, reason: str, agent: AgentRecord
    ) -> StoredEvent:
        try:
            event = await self.store.set_status(
                conversation_id, status, reason=reason, now=self.clock()
            )
        except UnknownConversation:
            raise NotFound(f"no conversation {conversation_id}") from None
        except IllegalTransition as exc:  # another agent moved it in the meantime
            raise Conflict(str(exc)) from None
        await self._published(event)
        return event

    async def _published(self, event: StoredEvent) -> None:
        await self.bus.publish(event.conversation_id, protocol.event_frame(event))
        await self.bus.publish(QUEUE_TOPIC, {"type": "queue_changed"})

    async def _conversation(self, conversation_id: str) -> ConversationRecord:
        record = await self.store.get_conversation(conversation_id)
        if record is None:
            raise NotFound(f"no conversation {conversation_id}")
        return record

    async def readable(self, conversation_id: str, agent: AgentRecord) -> ConversationRecord:
        """The conversation, if ``agent`` may read it: an admin reads every one, an agent
        the ones waiting in the queue and their own (:class:`Forbidden` otherwise)."""
        record = await self._conversation(conversation_id)
        if agent.role is AgentRole.ADMIN or record.status is ConversationStatus.WAITING:
            return record
        if await self.store.assigned_agent(conversation_id) == agent.id:
            return record
        raise Forbidden(
            f"conversation {conversation_id} is neither waiting nor yours: only admins read it"
        )

    async def _handling(
        self, conversation_id: str, agent: AgentRecord, *, waiting_too: bool = False
    ) -> ConversationRecord:
        """The conversation, if ``agent`` handles it (an admin handles every one)."""
        record = await self._conversation(conversation_id)
        if waiting_too and record.status is ConversationStatus.WAITING:
            return record
        if record.status is not ConversationStatus.AGENT:
            raise Conflict(
                f"conversation {conversation_id} is {record.status.value!r}; take it first"
            )
        owner = await self.store.assigned_agent(conversation_id)
        if owner != agent.id and agent.role is not AgentRole.ADMIN:
            raise Forbidden(f"conversation {conversation_id} is handled by another agent")
        return record


def load_canned(path: Path) -> list[Canned]:
    if not path.exists():
        return []
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        entries = [_CannedEntry.model_validate(item) for item in raw]
    except (yaml.YAMLError, ValidationError, TypeError) as exc:
        raise Invalid(f"{path}: expected a list of {{title, text}}: {exc}") from None
    return [Canned(e.title, e.text) for e in entries]
