"""A bot's conversation tests: customer messages and what the bot must do with each.

The optional file ``tests.yml`` in a bot folder holds a list of tests. Each test is one
conversation, a mapping with a ``name`` and ``steps`` (or, for a one-message test, the
step's keys beside the name)::

    - name: order status, then a follow-up with another number
      steps:
        - customer: where is my order 1001?
          expect: {action: order_status}
        - customer: and what about 1002?
          expect: {action: order_status}
    - name: off-topic
      customer: what's the weather in Hamburg?
      expect: {out_of_scope: true}

A step's ``expect`` (optional: a step without one only sets the scene) names one outcome:

- ``intent: NAME``: the bot answered with that intent (its response, or its action);
- ``response: TEXT``: a bot message contains TEXT (case and runs of white space ignored);
- ``action: NAME``: the bot ran that action;
- ``handover: true``: the bot handed the conversation to a person;
- ``out_of_scope: true``: the bot said it cannot help (or asked which of two it meant)
  instead of answering.

A step passes when one of the bot's messages in reply to it shows the outcome. ``frontdesk
test`` runs the file against the served bundle; ``frontdesk train``'s gate scores the
current bundle and the candidate on it.

Pure: parsing and judging; the channels run the conversations (``channels.conversation_tests``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.errors import BotError

TESTS_FILE = "tests.yml"


class TestsFileError(BotError):
    """A conversation tests file that cannot be used: the message names the test."""

    __test__ = False  # not a pytest class


KINDS = ("intent", "response", "action", "handover", "out_of_scope")
FLAGS = ("handover", "out_of_scope")
"""Kinds whose value is ``true`` (nothing to compare)."""


@dataclass(frozen=True)
class Expect:
    kind: str
    value: str | None = None

    def __str__(self) -> str:
        return self.kind if self.value is None else f"{self.kind}: {self.value}"


@dataclass(frozen=True)
class Step:
    customer: str
    expect: Expect | None = None


@dataclass(frozen=True)
class ConversationTest:
    name: str
    steps: tuple[Step, ...]

    @property
    def checks(self) -> int:
        return sum(1 for step in self.steps if step.expect is not None)


@dataclass(frozen=True)
class BotMessage:
    """What the bot said in reply to one customer message, as the store keeps it."""

    text: str
    decision: str | None
    """``reply``, ``action``, ``clarify``, ``escalate``, ``handoff``, ``error``."""
    intent: str | None = None
    action: str | None = None
    out_of_scope: bool = False


@dataclass(frozen=True)
class StepResult:
    test: str
    step: int
    """1-based position of the step in its test."""
    customer: str
    expect: Expect
    passed: bool
    got: str
    """What the bot did, in one line (for reports)."""

    @property
    def key(self) -> str:
        """Names the check across runs: the test and the step."""
        return f"{self.test}#{self.step}"


def read_tests(path: Path) -> tuple[ConversationTest, ...]:
    """The tests of ``path``; a malformed file raises :class:`DefinitionError` naming the
    test and what was expected."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TestsFileError(f"{path}: cannot read the conversation tests: {exc}") from None
    if data is None:
        return ()
    if not isinstance(data, list):
        raise TestsFileError(f"{path}: expected a list of tests, got {type(data).__name__}")
    tests = [_test(path, number, item) for number, item in enumerate(data, 1)]
    names = [t.name for t in tests]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise TestsFileError(f"{path}: test names must be unique, repeated: {twice}")
    return tuple(tests)


def bot_tests(bot_dir: Path) -> tuple[ConversationTest, ...]:
    """The bot folder's ``tests.yml``, or none when it has no such file."""
    path = bot_dir / TESTS_FILE
    return read_tests(path) if path.is_file() else ()


def _test(path: Path, number: int, item: Any) -> ConversationTest:
    where = f"{path}: test {number}"
    if not isinstance(item, dict):
        raise TestsFileError(f"{where}: expected a mapping with `name` and `steps`")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise TestsFileError(f"{where}: expected a `name` (text)")
    where = f"{path}: test {name!r}"
    if "steps" in item:
        unknown = set(item) - {"name", "steps"}
        raw = item["steps"]
        if not isinstance(raw, list) or not raw:
            raise TestsFileError(f"{where}: `steps` must be a non-empty list")
    else:
        unknown = set(item) - {"name", "customer", "expect"}
        raw = [{k: v for k, v in item.items() if k != "name"}]
    if unknown:
        raise TestsFileError(f"{where}: unknown keys {sorted(unknown)}")
    steps = tuple(_step(f"{where}, step {i}", s) for i, s in enumerate(raw, 1))
    if not any(step.expect is not None for step in steps):
        raise TestsFileError(f"{where}: no step has an `expect`")
    return ConversationTest(name, steps)


def _step(where: str, item: Any) -> Step:
    if not isinstance(item, dict) or set(item) - {"customer", "expect"}:
        raise TestsFileError(f"{where}: expected `customer` (text) and optionally `expect`")
    text = item.get("customer")
    if not isinstance(text, str) or not text.strip():
        raise TestsFileError(f"{where}: `customer` must be a non-empty text")
    expect = item.get("expect")
    if expect is None:
        return Step(text)
    return Step(text, _expect(where, expect))


def _expect(where: str, item: Any) -> Expect:
    if not isinstance(item, dict) or len(item) != 1:
        raise TestsFileError(f"{where}: `expect` must name one outcome, one of {list(KINDS)}")
    ((kind, value),) = item.items()
    if kind not in KINDS:
        raise TestsFileError(f"{where}: unknown outcome {kind!r}, expected one of {list(KINDS)}")
    if kind in FLAGS:
        if value is not True:
            raise TestsFileError(f"{where}: `{kind}` takes `true`, got {value!r}")
        return Expect(kind)
    if not isinstance(value, str) or not value.strip():
        raise TestsFileError(f"{where}: `{kind}` takes a non-empty text, got {value!r}")
    return Expect(kind, value)


def judge(test: str, number: int, step: Step, said: Sequence[BotMessage]) -> StepResult:
    """Whether the bot's messages ``said`` in reply to ``step`` show its expectation."""
    assert step.expect is not None
    expect = step.expect
    passed = any(_shows(expect, message) for message in said)
    return StepResult(test, number, step.customer, expect, passed, _summary(said))


def _shows(expect: Expect, message: BotMessage) -> bool:
    match expect.kind:
        case "intent":
            return message.decision in ("reply", "action") and message.intent == expect.value
        case "response":
            return _norm(expect.value or "") in _norm(message.text)
        case "action":
            return message.decision == "action" and message.action == expect.value
        case "handover":
            return message.decision == "escalate"
        case "out_of_scope":
            return message.decision == "clarify"
    return False


def _summary(said: Sequence[BotMessage]) -> str:
    if not said:
        return "no reply"
    first = said[0]
    what = first.decision or "message"
    if first.intent:
        what += f" {first.intent}"
    if first.action:
        what += f" ({first.action})"
    return f"{what}: {first.text[:80]}"


def message_of(text: str, payload: Mapping[str, object]) -> BotMessage:
    """A stored bot message's text and payload as :class:`BotMessage`."""
    intent, action = payload.get("intent"), payload.get("action")
    decision = payload.get("decision")
    return BotMessage(
        text=text,
        decision=decision if isinstance(decision, str) else None,
        intent=intent if isinstance(intent, str) else None,
        action=action if isinstance(action, str) else None,
        out_of_scope=payload.get("out_of_scope") is True,
    )


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()
