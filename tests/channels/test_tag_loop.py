"""Agents' labels become training data: the console's to-tag queue, `frontdesk tags`
review, and a training that learns the reviewed examples."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.types import ConversationStatus, Role
from channels.cli import main
from channels.console.auth import hash_password
from channels.settings import Settings
from channels.store import AgentRole, Store
from channels.tag_proposals import LOW_CONFIDENCE, TAG, proposals
from channels.tags_cli import review
from retrieval.bundle import Bundle
from retrieval.registry import Registry
from tests.channels.server import running_server
from tests.channels.test_console import PASSWORD, logged_in
from training.reviewed import read_reviews

GIFT = [
    "could you wrap it as a present?",
    "do you do gift wrapping",
    "is gift packaging available",
    "can my order come wrapped as a gift",
    "I want the parcel gift-wrapped please",
]
PROBE = "please wrap the jumper as a birthday gift"


def now() -> datetime:
    return datetime.now(UTC)


async def _conversation(store: Store, text: str, bot: dict[str, Any], agent: str | None) -> str:
    """A conversation: the customer's message, the bot's answer with ``bot`` as its
    payload, and (given ``agent``, an agent id) an agent's reply after it."""
    record, _ = await store.create_conversation("web", now())
    event, _ = await store.append_customer_message(record.id, "c1", text, now())
    await store.append_event(
        record.id, kind="message", role=Role.BOT, text="...",
        payload={"in_reply_to": event.seq, **bot}, now=now(),
    )  # fmt: skip
    if agent is not None:
        await store.set_status(record.id, ConversationStatus.WAITING, reason="x", now=now())
        await store.append_event(
            record.id, kind="message", role=Role.AGENT, text="We can, for 3.50.",
            payload={"agent_id": agent}, now=now(),
        )  # fmt: skip
    return record.id


@pytest.fixture
def home(shop_home: Path, tmp_path: Path) -> Path:
    target = tmp_path / "home"
    shutil.copytree(shop_home, target)
    return target


@pytest.fixture
def gift_bot(shop_copy: Path) -> Path:
    """The demo bot with a new intent, gift_wrap, declared with one example."""
    text = (shop_copy / "bot.yml").read_text()
    text = text.replace(
        "intents:\n",
        "intents:\n  gift_wrap:\n    examples:\n      - can you gift wrap my order?\n",
        1,
    ).replace(
        "responses:\n",
        'responses:\n  utter_gift_wrap:\n    - text: "Tick Gift wrap in the basket: 3.50."\n',
        1,
    )
    (shop_copy / "bot.yml").write_text(text)
    return shop_copy


@pytest.fixture
def served(home: Path, gift_bot: Path, shop_bundle: Any) -> Iterator[tuple[str, Settings]]:
    settings = Settings(home=home, bot=gift_bot, secret_key="k" * 40, reload_interval_s=0)

    async def add_agent() -> str:
        store = await Store.open(settings.store_url())
        try:
            agent = await store.add_agent(
                "ann@shop.example", "Ann", hash_password(PASSWORD), AgentRole.ADMIN, now()
            )
            await store.add_agent(
                "bob@shop.example", "Bob", hash_password(PASSWORD), AgentRole.AGENT, now()
            )
            return agent.id
        finally:
            await store.close()

    asyncio.run(add_agent())
    with running_server(settings, model=shop_bundle) as address:
        yield address, settings


async def test_the_console_lists_unsure_messages_to_tag_until_they_are_tagged(
    served: tuple[str, Settings],
) -> None:
    """Messages the bot asked back about or handed over unsure of are queued for tagging,
    newest first, for admins; confident answers are not; a tagged message leaves the
    queue."""
    address, settings = served
    store = await Store.open(settings.store_url())
    try:
        sure = await _conversation(store, "where is my order?", {"decision": "reply"}, None)
        asked = await _conversation(store, GIFT[0], {"decision": "clarify"}, None)
        handed = await _conversation(
            store, GIFT[1], {"decision": "escalate", "reason": "low_confidence"}, None
        )
    finally:
        await store.close()
    bob = await logged_in(address, "bob@shop.example")
    assert (await bob.get("/console/api/to-tag")).status_code == 403  # admins only
    ann = await logged_in(address, "ann@shop.example")
    listed = (await ann.get("/console/api/to-tag")).json()["messages"]
    assert [(m["conversation_id"], m["why"]) for m in listed] == [
        (handed, "low_confidence"), (asked, "clarify"),
    ]  # fmt: skip
    assert sure not in {m["conversation_id"] for m in listed}
    tagged = await ann.post(
        f"/console/api/conversations/{asked}/tags", {"seq": listed[1]["seq"], "intent": "gift_wrap"}
    )
    assert tagged.status_code == 200
    left = (await ann.get("/console/api/to-tag")).json()["messages"]
    assert [m["conversation_id"] for m in left] == [handed]


async def test_review_proposes_tags_and_answered_unsure_messages_once(
    served: tuple[str, Settings],
) -> None:
    """Tags come with their intent, unsure messages an agent answered without one;
    decisions are written redacted and never proposed again."""
    _, settings = served
    store = await Store.open(settings.store_url())
    try:
        agent = await store.agent_login("ann@shop.example")
        assert agent is not None
        agent_id = agent[0].id
        tagged = await _conversation(store, GIFT[2], {"decision": "reply"}, None)
        await store.tag_intent(tagged, 1, "gift_wrap", agent_id, now())
        await _conversation(store, "mail me at jo@example.com", {"decision": "clarify"}, agent_id)
        await _conversation(store, "never answered", {"decision": "clarify"}, None)
        found = await proposals(store)
    finally:
        await store.close()
    assert [(p.text, p.intent, p.source) for p in found] == [
        (GIFT[2], "gift_wrap", TAG), ("mail me at jo@example.com", None, LOW_CONFIDENCE),
    ]  # fmt: skip
    answers = iter(["", "gift_wrap"])
    counts = review(settings, found, ask=lambda prompt: next(answers), out=None)
    assert counts == {"accepted": 2, "rejected": 0, "left": 0}
    reviews = read_reviews(settings.bot)
    assert [(r.intent, r.source) for r in reviews] == [
        ("gift_wrap", TAG),
        ("gift_wrap", LOW_CONFIDENCE),
    ]
    assert "jo@example.com" not in reviews[1].text  # redacted as training redacts
    store = await Store.open(settings.store_url())
    try:
        assert await proposals(store, decided={r.key for r in reviews}) == []
    finally:
        await store.close()


@pytest.mark.slow
async def test_tags_from_the_console_become_examples_that_change_predictions(
    served: tuple[str, Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    """Agents tag customer messages `gift_wrap` in the console; `tags review
    --accept-tagged` accepts them; a new intent with too few examples is refused by
    `train`; with enough, the trained model recognises a new paraphrase as gift_wrap."""
    address, settings = served
    home, bot = str(settings.home), str(settings.bot)
    ann = await logged_in(address, "ann@shop.example")
    store = await Store.open(settings.store_url())
    try:
        ids = [await _conversation(store, t, {"decision": "clarify"}, None) for t in GIFT]
    finally:
        await store.close()

    async def tag(cids: list[str]) -> None:
        for cid in cids:
            response = await ann.post(
                f"/console/api/conversations/{cid}/tags", {"seq": 1, "intent": "gift_wrap"}
            )
            assert response.status_code == 200

    await tag(ids[:2])
    review_argv = ["tags", "review", "--accept-tagged", "--bot", bot, "--home", home, "--json"]
    assert await asyncio.to_thread(main, review_argv) == 0
    assert json.loads(capsys.readouterr().out)["accepted"] == 2
    train = ["train", "--bot", bot, "--home", home, "--nice", "0", "--json", "--force"]
    assert await asyncio.to_thread(main, train) == 2  # 1 + 2 examples of a new intent
    assert "new intents need at least 5 examples" in capsys.readouterr().err
    assert Registry(settings.models_dir).current_version() == "v0001"

    await tag(ids[2:])
    assert await asyncio.to_thread(main, review_argv) == 0
    assert json.loads(capsys.readouterr().out)["accepted"] == 3
    assert await asyncio.to_thread(main, train) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reviewed_examples"] == 5 and out["current"] == "v0002"

    bundle = Bundle.load(Registry(settings.models_dir).current_bundle())
    probs, _ = bundle.head.predict(bundle.encoder.encode([PROBE]))
    assert bundle.head.intents[int(np.argmax(probs[0]))] == "gift_wrap"
