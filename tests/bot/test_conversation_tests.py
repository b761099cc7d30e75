"""The conversation tests format: parsed strictly, judged on what the bot said."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.conversation_tests import (
    BotMessage,
    Expect,
    Step,
    TestsFileError,
    bot_tests,
    judge,
    read_tests,
)

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tests.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_steps_and_the_one_message_shorthand_read_alike(tmp_path: Path) -> None:
    """A test has steps, or one step's keys beside its name; a step without `expect`
    sets the scene and is not a check."""
    tests = read_tests(
        _write(
            tmp_path,
            """
- name: two steps
  steps:
    - customer: hi
    - customer: where is order 1001
      expect: {action: action_order_status}
- name: one
  customer: weather?
  expect: {out_of_scope: true}
""",
        )
    )
    assert [t.name for t in tests] == ["two steps", "one"]
    assert tests[0].steps[0] == Step("hi") and tests[0].checks == 1
    assert tests[1].steps == (Step("weather?", Expect("out_of_scope")),)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("name: x", "expected a list of tests"),
        ("- customer: hi\n  expect: {intent: greet}", "expected a `name`"),
        ("- name: a\n  customer: hi", "no step has an `expect`"),
        ("- name: a\n  customer: hi\n  expect: {mood: happy}", "unknown outcome 'mood'"),
        ("- name: a\n  customer: hi\n  expect: {handover: yes please}", "takes `true`"),
        ("- name: a\n  customer: hi\n  expect: {intent: ''}", "non-empty text"),
        ("- name: a\n  customer: hi\n  expect: {intent: a, action: b}", "one outcome"),
        ("- name: a\n  steps: []", "non-empty list"),
        ("- name: a\n  customer: hi\n  expect: {intent: x}\n  extra: 1", "unknown keys"),
        (
            "- {name: a, customer: hi, expect: {intent: x}}\n- {name: a, customer: yo, "
            "expect: {intent: x}}",
            "unique",
        ),
    ],
)
def test_a_malformed_file_names_the_test_and_what_was_expected(
    tmp_path: Path, text: str, error: str
) -> None:
    """Every malformation is refused with a message that says what to write instead."""
    with pytest.raises(TestsFileError, match=error):
        read_tests(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("expect", "message", "passed"),
    [
        (Expect("intent", "greet"), BotMessage("Hi!", "reply", intent="greet"), True),
        (Expect("intent", "greet"), BotMessage("Hi!", "reply", intent="thanks"), False),
        (Expect("intent", "greet"), BotMessage("Sorry", "clarify"), False),
        (Expect("action", "act"), BotMessage("1001: shipped", "action", "order", "act"), True),
        (Expect("action", "act"), BotMessage("Which order?", "reply", "order"), False),
        (Expect("response", "GIFT  wrap"), BotMessage("Tick 'Gift wrap' ...", "reply"), True),
        (Expect("response", "gift wrap"), BotMessage("Returns take 14 days", "reply"), False),
        (Expect("handover"), BotMessage("Passing you on", "escalate"), True),
        (Expect("handover"), BotMessage("Hi", "reply", intent="greet"), False),
        (
            Expect("out_of_scope"),
            BotMessage("Sorry, can't help", "clarify", out_of_scope=True),
            True,
        ),
        (Expect("out_of_scope"), BotMessage("Returns take 14 days", "reply"), False),
    ],
)
def test_judge_reads_the_outcome_from_the_stored_message(
    expect: Expect, message: BotMessage, passed: bool
) -> None:
    """Each kind of expectation passes on its own outcome and on no other."""
    result = judge("t", 1, Step("question", expect), [message])
    assert result.passed is passed
    assert result.key == "t#1"


def test_no_reply_fails_and_says_so() -> None:
    """A step the bot did not answer fails with "no reply"."""
    result = judge("t", 2, Step("hello?", Expect("intent", "greet")), [])
    assert not result.passed and result.got == "no reply"


def test_the_demo_bot_ships_conversation_tests() -> None:
    """examples/shop/tests.yml parses and checks every kind of outcome."""
    tests = bot_tests(SHOP)
    kinds = {s.expect.kind for t in tests for s in t.steps if s.expect is not None}
    assert len(tests) >= 15 and kinds == {
        "intent",
        "response",
        "action",
        "handover",
        "out_of_scope",
    }
    assert bot_tests(SHOP / "nothing-here") == ()
