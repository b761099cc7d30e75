"""The service's hand-over path: the customer is told what happens next, then the
conversation joins the queue. A real store and the demo bot's engine; the model is a
script (these tests are about the escalation path, not about recognising intents)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.definition import load_bot
from bot.engine import Engine
from bot.types import ActionFailurePolicy
from bot.types import ConversationStatus as S
from channels.actions import ActionMessage, ActionRequest
from channels.bus import InProcessBus
from channels.errors import ActionFailed
from channels.inference import MicroBatcher
from channels.service import ConversationService
from channels.store import Store, StoredEvent
from retrieval.bundle import Analysis

SHOP = load_bot(Path(__file__).resolve().parents[2] / "examples" / "shop")
BERLIN = ZoneInfo("Europe/Berlin")
MONDAY_MORNING = datetime(2026, 11, 23, 10, 0, tzinfo=BERLIN)
SATURDAY_AFTERNOON = datetime(2026, 11, 28, 15, 0, tzinfo=BERLIN)
INTENTS = {
    "I want to talk to a person": "talk_to_human",
    "where is my order 1042?": "order_status",
    "this is useless": "refunds",
}


class ScriptedModel:
    """Confident about the intent ``INTENTS`` gives a text, else about ``greet``."""

    version = "scripted"

    def analyze(
        self, texts: list[str], contexts: list[str] | None = None, k: int = 5
    ) -> list[Analysis]:
        return [Analysis(((INTENTS.get(t, "greet"), 0.95),), 0.0, ()) for t in texts]


class BrokenActions:
    async def run(self, request: ActionRequest) -> list[ActionMessage]:
        raise ActionFailed(f"action {request.action} timed out")

    async def aclose(self) -> None:
        pass


@asynccontextmanager
async def make_service(
    tmp_path: Path, now: datetime, action_failure: ActionFailurePolicy
) -> AsyncIterator[ConversationService]:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    definition = replace(SHOP, handoff=replace(SHOP.handoff, action_failure=action_failure))
    batcher = MicroBatcher(ScriptedModel())
    batcher.start()
    service = ConversationService(
        store, Engine(definition), batcher, BrokenActions(), InProcessBus(), clock=lambda: now
    )
    try:
        yield service
    finally:
        await batcher.stop()
        await store.close()


async def say(service: ConversationService, text: str, waiting: int = 0) -> list[StoredEvent]:
    """``waiting`` other customers in the queue; the events that answer ``text``."""
    for _ in range(waiting):
        other, _ = await service.open("web")
        await service.set_status(other.id, S.WAITING, "requested")
    record, _ = await service.open("web")
    event, _ = await service.accept(record.id, "c1", text)
    await service.respond(event)
    return await service.store.events_after(record.id, event.seq)


@pytest.mark.parametrize(
    ("now", "text", "waiting", "reason", "notice", "facts"),
    [
        (
            MONDAY_MORNING,
            "I want to talk to a person",
            2,
            "requested",
            "You are number 3 in the queue; one of my colleagues usually answers within "
            "about 9 minutes.",
            {"open": True, "queue_position": 3, "expected_wait_s": 540, "back_at": None},
        ),
        (
            SATURDAY_AFTERNOON,
            "I want to talk to a person",
            0,
            "requested",
            "Our team is back Monday at 09:00 (Europe/Berlin) and will answer you right here. "
            "You can close this page: the conversation is kept, and it'll be waiting for you "
            "when you come back.",
            {
                "open": False,
                "queue_position": 1,
                "expected_wait_s": None,
                "back_at": "2026-11-30T09:00:00+01:00",
            },
        ),
        (
            MONDAY_MORNING,
            "this is useless",
            0,
            "frustration",
            "You are number 1 in the queue; one of my colleagues usually answers within "
            "about 3 minutes.",
            {"open": True, "queue_position": 1, "expected_wait_s": 180, "back_at": None},
        ),
    ],
)
async def test_escalation_tells_the_customer_what_happens_next(
    tmp_path: Path,
    now: datetime,
    text: str,
    waiting: int,
    reason: str,
    notice: str,
    facts: dict[str, Any],
) -> None:
    """An escalation says why, then the queue place and wait (or when the team is back),
    and only then moves the conversation to `waiting`."""
    async with make_service(tmp_path, now, ActionFailurePolicy.OFFER) as service:
        handover, told, status = await say(service, text, waiting)
        assert handover.payload["decision"] == "escalate"
        assert handover.payload["reason"] == reason
        assert told.text == notice
        assert {**told.payload, "in_reply_to": None, "model": None} == {
            "in_reply_to": None,
            "model": None,
            "decision": "handoff",
            **facts,
        }
        assert (status.kind, status.payload["status"], status.payload["reason"]) == (
            "status",
            "waiting",
            reason,
        )


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (ActionFailurePolicy.OFFER, ["reply"]),
        (ActionFailurePolicy.ESCALATE, ["escalate", "handoff", "status"]),
    ],
)
async def test_action_failure_policy(
    tmp_path: Path, policy: ActionFailurePolicy, expected: list[str]
) -> None:
    """A failed action offers a person by default, or hands over when bot.yml says so."""
    async with make_service(tmp_path, MONDAY_MORNING, policy) as service:
        events = await say(service, "where is my order 1042?")
        kinds = [e.kind if e.kind == "status" else e.payload["decision"] for e in events]
        assert kinds == expected
        assert all("timed out" in str(e.payload.get("action_error")) for e in events[:1])
        if policy is ActionFailurePolicy.ESCALATE:
            assert events[0].payload["reason"] == "action_failed"
            assert events[0].payload["detail"] == "action 'action_order_status' failed"
