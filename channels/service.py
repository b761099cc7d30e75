"""The conversation service: persists inbound messages, asks the engine, carries out its
decisions, persists and publishes what it says. Every channel goes through here.

Messages of one conversation are processed one at a time, in the order they were accepted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
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
    QueueFacts,
    Reply,
    Role,
    RunAction,
)
from channels import logs, protocol
from channels.actions import ActionRequest, ActionRunner
from channels.bus import QUEUE_TOPIC, Bus
from channels.errors import ActionFailed, ConversationClosed
from channels.inference import MicroBatcher
from channels.locks import ConversationLocks, Held, InProcessLocks
from channels.metrics import Metrics
from channels.store import ClosedConversation, ConversationRecord, Store, StoredEvent
from retrieval.pairs import message_window

log = logging.getLogger(__name__)

HISTORY_TURNS = 20
CATCH_UP_WINDOW = 50
"""How far back (in events) a replica looks for earlier unanswered messages (see respond)."""


def unanswered_in(
    window: list[StoredEvent], start: int, upto: int | None = None
) -> list[StoredEvent]:
    """The customer messages of ``window`` (events after seq ``start``, in order), up to
    seq ``upto``, that no bot message answers and that come after the last message a bot
    message answers and the last status change before ``upto`` (a person handled what came
    before it)."""
    floor, replied = start, set()
    for e in window:
        reply_to = e.payload.get("in_reply_to") if e.role is Role.BOT else None
        if isinstance(reply_to, int):
            replied.add(reply_to)
            floor = max(floor, reply_to)
        elif e.kind == "status" and (upto is None or e.seq < upto):
            floor = max(floor, e.seq)
    return [
        e
        for e in window
        if e.role is Role.CUSTOMER
        and floor < e.seq
        and (upto is None or e.seq <= upto)
        and e.seq not in replied
    ]


def utc_now() -> datetime:
    return datetime.now(UTC)


class ConversationService:
    def __init__(
        self,
        store: Store,
        engine: Engine,
        batcher: MicroBatcher,
        actions: ActionRunner,
        bus: Bus,
        clock: Callable[[], datetime] = utc_now,
        metrics: Metrics | None = None,
        locks: ConversationLocks | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.batcher = batcher
        self.actions = actions
        self.bus = bus
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.locks: ConversationLocks = locks or InProcessLocks()
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self, channel: str) -> tuple[ConversationRecord, str]:
        return await self.store.create_conversation(channel, self.clock())

    async def accept(
        self, conversation_id: str, client_id: str, text: str
    ) -> tuple[StoredEvent, bool]:
        """Persist a customer message (once per ``client_id``) and publish it."""
        try:
            event, created = await self.store.append_customer_message(
                conversation_id, client_id, text, self.clock()
            )
        except ClosedConversation as exc:
            raise ConversationClosed(
                f"conversation {conversation_id} is closed; start a new one with a "
                "`hello` frame without conversation_id"
            ) from exc
        if created:
            self.metrics.messages.labels("in").inc()
            await self.bus.publish(conversation_id, protocol.event_frame(event))
        return event, created

    def respond_later(self, event: StoredEvent) -> None:
        """Answer ``event`` in the background, after earlier messages of its conversation."""
        task = asyncio.create_task(self.respond(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def catch_up_later(self, event: StoredEvent) -> None:
        """:meth:`catch_up` in the background (a resent message)."""
        task = asyncio.create_task(self._catch_up_quietly(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _catch_up_quietly(self, event: StoredEvent) -> None:
        await self.catch_up(event)

    async def drain(self) -> None:
        """Wait for every answer in flight (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def respond(self, event: StoredEvent) -> None:
        """Answer ``event`` under its conversation's lock, after the messages before it.

        With several replicas the lock may go to a later message first; its holder then
        answers the earlier ones too, in seq order, and this call finds ``event`` answered.
        """
        conversation_id = event.conversation_id
        logs.conversation_id.set(conversation_id)  # this task's log records carry it
        started = time.perf_counter()
        try:
            async with self.locks.hold(conversation_id) as held:
                for pending in await self._unanswered(event, held):
                    await self._answer(pending, started)
                await held.mark_answered(event.seq)
        except Exception:  # the lock or the store failed before answering
            log.exception("answering seq %d of conversation %s failed", event.seq, conversation_id)
            await self._apologise(event)

    async def catch_up(self, event: StoredEvent, *, max_age_s: float | None = None) -> int:
        """Answer every customer message of ``event``'s conversation that has no answer
        yet, up to ``event``, in seq order, under the conversation's lock: a message resent
        after a crash, a redelivered webhook, or the recovery sweep. Whatever was answered
        meanwhile (by its first delivery, by another replica) is not answered again.
        Messages older than ``max_age_s`` get one apology instead. -> messages answered."""
        conversation_id = event.conversation_id
        logs.conversation_id.set(conversation_id)
        started = time.perf_counter()
        try:
            async with self.locks.hold(conversation_id) as held:
                pending = [e for e in await self._pending(conversation_id) if e.seq <= event.seq]
                if not pending:
                    return 0
                oldest = (self.clock() - pending[0].created_at).total_seconds()
                if max_age_s is not None and oldest > max_age_s:
                    await self._apologise(pending[-1])  # one apology answers them all
                else:
                    for message in pending:
                        await self._answer(message, started)
                await held.mark_answered(pending[-1].seq)
                return len(pending)
        except Exception:
            log.exception("catching up conversation %s failed", conversation_id)
            await self._apologise(event)
            return 0

    async def _pending(self, conversation_id: str) -> list[StoredEvent]:
        """The customer messages after the conversation's last bot answer or status change:
        none when a person handles it or it is closed."""
        record = await self.store.get_conversation(conversation_id)
        if record is None or record.status is not ConversationStatus.BOT:
            return []
        start = max(0, record.last_seq - 4 * CATCH_UP_WINDOW)
        window = await self.store.events_after(conversation_id, start, 4 * CATCH_UP_WINDOW + 1)
        return unanswered_in(window, start)

    async def recover(
        self, since: datetime, before: datetime, *, max_age_s: float
    ) -> tuple[int, int]:
        """Answer the conversations whose last message, from ``since`` to ``before``, is
        a customer's with no answer (``catch_up``). -> (conversations, messages)."""
        conversations = messages = 0
        for tail in await self.store.unanswered_tails(since, before):
            answered = await self.catch_up(tail, max_age_s=max_age_s)
            if answered:
                conversations += 1
                messages += answered
        return conversations, messages

    async def _answer(self, event: StoredEvent, started: float) -> None:
        try:
            await self._respond(event)
            self.metrics.reply_seconds.observe(time.perf_counter() - started)
        except Exception:
            log.exception(
                "answering seq %d of conversation %s failed", event.seq, event.conversation_id
            )
            await self._apologise(event)

    async def _unanswered(self, event: StoredEvent, held: Held) -> list[StoredEvent]:
        """The customer messages to answer now, in seq order: ``event`` alone where the lock
        keeps the order; else each one up to ``event`` not answered yet, found by the lock's
        fence and the bot replies' ``in_reply_to`` (a status change ends what came before:
        a person handled it)."""
        if held.in_order:
            return [event]
        if held.answered is not None and event.seq <= held.answered:
            return []
        start = max(0, event.seq - CATCH_UP_WINDOW, held.answered or 0)
        window = await self.store.events_after(
            event.conversation_id, start, event.seq - start + 4 * CATCH_UP_WINDOW
        )
        return unanswered_in(window, start, upto=event.seq)

    async def _respond(self, event: StoredEvent) -> None:
        conversation_id = event.conversation_id
        # the history before this message: later ones may already be stored
        record, turns = await self.store.conversation_with_turns(
            conversation_id, HISTORY_TURNS, before_seq=event.seq
        )
        if record is None or record.status is not ConversationStatus.BOT:
            return  # a person handles it (or it is closed): the bot stays silent
        await self.bus.publish(conversation_id, protocol.typing())
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
            reply = self.engine.on_error(
                Conversation(event.conversation_id, ConversationStatus.BOT)
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
            why = {"reason": decision.reason.value, "detail": decision.detail}
            await self._say(
                conversation_id, decision.text, (), {**meta, "decision": "escalate", **why}
            )
            await self._tell_what_happens_next(conversation_id, meta)
            await self.set_status(
                conversation_id, ConversationStatus.WAITING, decision.reason.value
            )

    async def _tell_what_happens_next(self, conversation_id: str, meta: dict[str, Any]) -> None:
        """Tell a customer being handed over their place in the queue and the expected
        wait, or, outside opening hours, when and where the team will answer."""
        # Said before the status changes: once it is `waiting` an agent may take the
        # conversation at once, and the bot must not speak after that. This conversation
        # joins the end of the queue.
        position = await self.store.waiting_count() + 1
        notice = self.engine.handoff_notice(QueueFacts(position=position), self.clock())
        back_at = notice.back_at.isoformat() if notice.back_at is not None else None
        facts = {
            "open": notice.open,
            "queue_position": notice.position,
            "expected_wait_s": notice.expected_wait_s,
            "back_at": back_at,
        }
        await self._say(conversation_id, notice.text, (), {**meta, "decision": "handoff", **facts})

    async def set_status(
        self, conversation_id: str, status: ConversationStatus, reason: str | None
    ) -> StoredEvent:
        event = await self.store.set_status(
            conversation_id, status, reason=reason, now=self.clock()
        )
        await self.bus.publish(conversation_id, protocol.event_frame(event))
        # the agents' consoles show the queue live: escalations reach them at once
        await self.bus.publish(QUEUE_TOPIC, {"type": "queue_changed"})
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
        model, decision = payload.get("model"), payload.get("decision")
        if isinstance(model, str) and isinstance(decision, str):
            self.metrics.answers.labels(model, decision).inc()
        await self.bus.publish(conversation_id, protocol.event_frame(event))
        return event
