"""The conversation service: persists inbound messages, asks the engine, carries out its
decisions, persists and publishes what it says. Every channel goes through here.

Messages of one conversation are processed one at a time, in the order they were accepted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from bot.engine import Engine, streak_after
from bot.types import (
    Button,
    Clarify,
    Conversation,
    ConversationStatus,
    Decision,
    Escalate,
    Reply,
    Role,
    RunAction,
)
from channels import logs, protocol
from channels.actions import ActionRequest, ActionRunner
from channels.bus import InProcessBus
from channels.errors import ActionFailed, ConversationClosed
from channels.inference import MicroBatcher
from channels.metrics import Metrics
from channels.store import ConversationRecord, Store, StoredEvent
from retrieval.pairs import message_window

log = logging.getLogger(__name__)

HISTORY_TURNS = 20


def utc_now() -> datetime:
    return datetime.now(UTC)


class ConversationService:
    def __init__(
        self,
        store: Store,
        engine: Engine,
        batcher: MicroBatcher,
        actions: ActionRunner,
        bus: InProcessBus,
        clock: Callable[[], datetime] = utc_now,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.batcher = batcher
        self.actions = actions
        self.bus = bus
        self.clock = clock
        self.metrics = metrics or Metrics()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self, channel: str) -> tuple[ConversationRecord, str]:
        return await self.store.create_conversation(channel, self.clock())

    async def accept(
        self, conversation_id: str, client_id: str, text: str
    ) -> tuple[StoredEvent, bool]:
        """Persist a customer message (once per ``client_id``) and publish it."""
        record = await self.store.get_conversation(conversation_id)
        if record is not None and record.status is ConversationStatus.CLOSED:
            raise ConversationClosed(
                f"conversation {conversation_id} is closed; start a new one with a "
                "`hello` frame without conversation_id"
            )
        event, created = await self.store.append_customer_message(
            conversation_id, client_id, text, self.clock()
        )
        if created:
            self.metrics.messages.labels("in").inc()
            await self.bus.publish(conversation_id, protocol.event_frame(event))
        return event, created

    def respond_later(self, event: StoredEvent) -> None:
        """Answer ``event`` in the background, after earlier messages of its conversation."""
        task = asyncio.create_task(self.respond(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for every answer in flight (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def respond(self, event: StoredEvent) -> None:
        conversation_id = event.conversation_id
        logs.conversation_id.set(conversation_id)  # this task's log records carry it
        started = time.perf_counter()
        with self._lock_for(conversation_id) as lock:
            async with lock:
                try:
                    await self._respond(event)
                    self.metrics.reply_seconds.observe(time.perf_counter() - started)
                except Exception:
                    log.exception(
                        "answering seq %d of conversation %s failed", event.seq, conversation_id
                    )
                    await self._apologise(event)

    async def _respond(self, event: StoredEvent) -> None:
        conversation_id = event.conversation_id
        record = await self.store.get_conversation(conversation_id)
        if record is None or record.status is not ConversationStatus.BOT:
            return  # a person handles it (or it is closed): the bot stays silent
        await self.bus.publish(conversation_id, protocol.typing())
        # the history before this message: later ones may already be stored
        turns = await self.store.recent_turns(conversation_id, HISTORY_TURNS, before_seq=event.seq)
        conversation = Conversation(
            id=conversation_id,
            status=record.status,
            turns=turns,
            low_confidence_streak=record.low_confidence_streak,
        )
        text = event.text or ""
        window = message_window([(t.role.value, t.text) for t in turns], text)
        outputs = await self.batcher.analyze(text, window)
        decision = self.engine.decide(conversation, text, outputs, self.clock())
        meta: dict[str, Any] = {"in_reply_to": event.seq, "model": self.batcher.model.version}
        if isinstance(decision, RunAction):
            top = outputs.top_intent
            request = ActionRequest(
                action=decision.name,
                conversation_id=conversation_id,
                text=text,
                intent=decision.intent,
                confidence=top.probability if top else 0.0,
                entities=decision.entities,
            )
            try:
                messages = await self.actions.run(request)
            except ActionFailed as exc:
                log.warning("conversation %s: %s", conversation_id, exc)
                decision = self.engine.on_action_failure(conversation, decision.name)
                meta["action_error"] = str(exc)
            else:
                for message in messages:
                    await self._say(
                        conversation_id,
                        message.text,
                        message.buttons,
                        {
                            **meta,
                            "decision": "action",
                            "action": decision.name,
                            "intent": decision.intent,
                        },
                    )
        if not isinstance(decision, RunAction):
            await self._carry_out(conversation_id, decision, meta)
        streak = streak_after(conversation, decision)
        if streak != record.low_confidence_streak:
            await self.store.set_low_confidence_streak(conversation_id, streak)

    async def _apologise(self, event: StoredEvent) -> None:
        """Something broke while answering: never leave the customer without a reply."""
        try:
            reply = self.engine.on_action_failure(
                Conversation(event.conversation_id, ConversationStatus.BOT), "answer"
            )
            await self._say(
                event.conversation_id,
                reply.text,
                reply.buttons,
                {"in_reply_to": event.seq, "decision": "error"},
            )
        except Exception:
            log.exception("could not apologise in conversation %s", event.conversation_id)

    async def _carry_out(
        self, conversation_id: str, decision: Decision, meta: dict[str, Any]
    ) -> None:
        if isinstance(decision, Reply):
            await self._say(
                conversation_id,
                decision.text,
                decision.buttons,
                {**meta, "decision": "reply", "intent": decision.intent, "score": decision.score},
            )
        elif isinstance(decision, Clarify):
            await self._say(
                conversation_id,
                decision.text,
                decision.buttons,
                {**meta, "decision": "clarify", "out_of_scope": decision.out_of_scope},
            )
        elif isinstance(decision, Escalate):
            await self._say(
                conversation_id,
                decision.text,
                (),
                {**meta, "decision": "escalate", "reason": decision.reason.value},
            )
            await self.set_status(
                conversation_id, ConversationStatus.WAITING, decision.reason.value
            )

    async def set_status(
        self, conversation_id: str, status: ConversationStatus, reason: str | None
    ) -> StoredEvent:
        event = await self.store.set_status(
            conversation_id, status, reason=reason, now=self.clock()
        )
        await self.bus.publish(conversation_id, protocol.event_frame(event))
        return event

    async def _say(
        self, conversation_id: str, text: str, buttons: tuple[Button, ...], payload: dict[str, Any]
    ) -> StoredEvent:
        if buttons:
            payload = {
                **payload,
                "buttons": [{"title": b.title, "payload": b.payload} for b in buttons],
            }
        event = await self.store.append_event(
            conversation_id,
            kind="message",
            role=Role.BOT,
            text=text,
            payload=payload,
            now=self.clock(),
        )
        self.metrics.messages.labels("out").inc()
        await self.bus.publish(conversation_id, protocol.event_frame(event))
        return event

    @contextmanager
    def _lock_for(self, conversation_id: str) -> Iterator[asyncio.Lock]:
        lock, users = self._locks.get(conversation_id, (asyncio.Lock(), 0))
        self._locks[conversation_id] = (lock, users + 1)
        try:
            yield lock
        finally:
            lock, users = self._locks[conversation_id]
            if users <= 1:
                del self._locks[conversation_id]
            else:
                self._locks[conversation_id] = (lock, users - 1)
