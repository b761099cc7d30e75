"""The evaluation gate: a worse model never becomes current; rollback works after edits."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from bot.types import Role
from channels.cli import main
from channels.gate import REFUSED_EXIT, GateRules, Outcomes, decide
from channels.settings import Settings
from retrieval.registry import Registry

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


def _outcomes(**checks: dict[str, bool]) -> Outcomes:
    return Outcomes(
        {name: {k: (v, "") for k, v in items.items()} for name, items in checks.items()}
    )


def test_a_drop_beyond_the_tolerance_refuses_and_says_by_how_much() -> None:
    """intent accuracy 1.0 -> 0.5 on the same two rows: refused, naming the metric."""
    current = _outcomes(intent_accuracy={"a": True, "b": True})
    new = _outcomes(intent_accuracy={"a": True, "b": False})
    verdict = decide("v2", "v1", current, new, GateRules(tolerance=0.1, max_flip_rate=1.0))
    assert verdict.decision == "refused"
    assert verdict.drops == (
        "intent_accuracy dropped 50.0 points (1.000 -> 0.500 on 2 items; tolerance 10.0)",
    )
    assert [f.item for f in verdict.flips] == ["b"]


def test_flips_count_even_when_the_average_holds() -> None:
    """One answer fixed and one broken: the metric holds, the flip rate refuses."""
    current = _outcomes(tests={"t#1": True, "t#2": False, "t#3": True, "t#4": True})
    new = _outcomes(tests={"t#1": False, "t#2": True, "t#3": True, "t#4": True})
    strict = decide("v2", "v1", current, new, GateRules(tolerance=0.0, max_flip_rate=0.2))
    assert strict.decision == "refused" and strict.flip_rate == 0.25
    assert strict.drops[0].startswith("negative flip rate 0.250: 1 of 4")
    lenient = decide("v2", "v1", current, new, GateRules(tolerance=0.0, max_flip_rate=0.25))
    assert lenient.decision == "promoted"


def test_only_items_both_bundles_were_scored_on_count() -> None:
    """A check one bundle has no outcome for is left out; better is promoted."""
    current = _outcomes(tests={"t#1": False}, intent_accuracy={"a": True})
    new = _outcomes(tests={"t#1": True, "t#9": False})
    verdict = decide("v2", "v1", current, new, GateRules())
    assert verdict.decision == "promoted"
    assert [(s.name, s.items, s.candidate) for s in verdict.scores] == [("tests", 1, 1.0)]


def test_rules_outside_zero_to_one_are_refused() -> None:
    with pytest.raises(ValueError, match="within 0 and 1"):
        GateRules(tolerance=2.0)


@pytest.fixture
def home(shop_home: Path, tmp_path: Path) -> Path:
    """A private copy of the session's trained demo home (v0001 current)."""
    target = tmp_path / "home"
    shutil.copytree(shop_home, target)
    return target


async def _ask(runtime: object, text: str) -> list[dict[str, object]]:
    """One customer message in a new conversation; the payloads of the bot's replies."""
    from channels.runtime import Runtime

    assert isinstance(runtime, Runtime)
    record, _ = await runtime.service.open("test")
    event, _ = await runtime.service.accept(record.id, "m1", text)
    await runtime.service.respond(event)
    later = await runtime.store.events_after(record.id, event.seq)
    return [dict(e.payload) for e in later if e.role is Role.BOT]


def _settings(home: Path, bot: Path) -> Settings:
    return Settings(
        home=home,
        bot=bot,
        database_url=f"sqlite+aiosqlite:///{home / 'store.db'}",
        reload_interval_s=0,  # the test drives the watcher
        gc_freeze=False,
    )


@pytest.mark.slow
async def test_the_gate_refuses_a_worse_model_and_the_server_keeps_serving(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`train --layers 1` (one encoder layer, from scratch): refused with exit 3,
    `current` unchanged, a running server keeps the old model; `models promote` then
    moves it, and `models rollback` brings the old one back."""
    from channels.runtime import Runtime

    registry = Registry(home / "models")
    runtime = await Runtime.start(_settings(home, SHOP))
    try:
        argv = ["train", "--bot", str(SHOP), "--home", str(home), "--layers", "1"]
        code = await asyncio.to_thread(main, [*argv, "--nice", "0", "--json"])
        out = json.loads(capsys.readouterr().out)
        assert code == REFUSED_EXIT
        assert out["gate"]["decision"] == "refused" and out["current"] == "v0001"
        assert out["gate"]["drops"] and out["gate"]["negative_flip_rate"] > 0
        assert registry.current_version() == "v0001"
        verdict = json.loads((registry.path_of("v0002") / "gate.json").read_text())
        assert verdict["decision"] == "refused" and verdict["against"] == "v0001"
        assert (registry.path_of("v0002") / "reports" / "gate.md").is_file()
        assert await runtime.watcher.check() is False
        assert runtime.batcher.model.version == "v0001"
        said = await _ask(runtime, "where is my order 1042?")
        assert said and said[0]["model"] == "v0001"

        assert main(["models", "promote", "v0002", "--home", str(home)]) == 0
        assert await runtime.watcher.check() is True
        assert runtime.batcher.model.version == "v0002"
        assert main(["models", "rollback", "--home", str(home)]) == 0
        assert await runtime.watcher.check() is True
        assert runtime.batcher.model.version == "v0001"
    finally:
        await runtime.stop()


@pytest.mark.slow
async def test_rollback_after_a_bot_yml_edit_serves_the_old_model_with_its_own_bot(
    home: Path, shop_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """bot.yml renames an intent; the new model (continued from the old one) serves it;
    after `models rollback` the old model serves again, with the bot definition it was
    trained with, though bot.yml still has the new name."""
    from channels.runtime import Runtime

    text = (shop_copy / "bot.yml").read_text()
    text = text.replace("  bot_challenge:", "  is_bot:").replace(
        "utter_bot_challenge", "utter_is_bot"
    )
    (shop_copy / "bot.yml").write_text(text)
    argv = ["train", "--bot", str(shop_copy), "--home", str(home), "--force"]
    code = await asyncio.to_thread(main, [*argv, "--nice", "0", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["current"] == "v0002"
    assert out["continued_from"] == "v0001" and out["gate"]["decision"] in ("promoted", "forced")
    registry = Registry(home / "models")
    assert registry.history()[-1].current == "v0002"

    runtime = await Runtime.start(_settings(home, shop_copy))
    try:
        said = await _ask(runtime, "are you a bot?")
        assert said[0]["model"] == "v0002" and said[0]["intent"] == "is_bot"
        assert main(["models", "rollback", "--home", str(home)]) == 0
        assert registry.current_version() == "v0001"
        assert await runtime.watcher.check() is True
        said = await _ask(runtime, "are you a bot?")
        assert said[0]["model"] == "v0001" and said[0]["intent"] == "bot_challenge"
    finally:
        await runtime.stop()


def test_frontdesk_test_holds_the_bots_conversations_with_the_served_model(
    shop_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`frontdesk test` runs tests.yml through the serving path: exit 0 when every check
    passes, 1 with the failures named when one does not, 2 without a tests file."""
    passing = tmp_path / "pass.yml"
    passing.write_text(
        "- name: shipping\n  customer: how much is shipping?\n  expect: {intent: shipping_costs}\n"
        "- name: a person\n  customer: I want to talk to a person\n  expect: {handover: true}\n"
    )
    failing = tmp_path / "fail.yml"
    failing.write_text(
        "- name: wrong on purpose\n  customer: how much is shipping?\n  expect: {intent: greet}\n"
    )
    home = ["--bot", str(SHOP), "--home", str(shop_home), "--json"]
    assert main(["test", *home, "--tests", str(passing)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["checks"] == out["passed"] == 2 and out["version"] == "v0001"
    assert main(["test", *home, "--tests", str(failing)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] == 0 and out["failures"][0]["test"] == "wrong on purpose"
    assert "shipping_costs" in out["failures"][0]["got"]
    assert main(["test", *home, "--tests", str(tmp_path / "none.yml")]) == 2
