"""Held-out customer questions for a bot: read them, ask them over the Rasa REST channel and
judge the replies.

Not a benchmark itself; shared by ``benchmarks/demo_questions.py`` and
``tests/channels/test_demo_questions.py``. The question file's format is described at the top
of ``tests/data/shop_questions.yml``.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "examples" / "shop"
QUESTIONS = ROOT / "tests" / "data" / "shop_questions.yml"
DIALOGUES_FILE = "dialogues.jsonl"
WEBHOOK = "/webhooks/rest/webhook"

INTENT, PAST, OUT_OF_SCOPE = "intent", "past", "out_of_scope"
CATEGORIES = (INTENT, PAST, OUT_OF_SCOPE)
NOTICE = "handoff notice"
"""The label of the queue / team-is-back message that follows a hand-over."""


def norm(text: str) -> str:
    """Case and runs of white space do not count when texts are compared."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class Expectation:
    """One right outcome: ``intent`` (``value`` the intent), ``past`` (``value`` a substring
    of the reply) or ``out_of_scope`` (no value)."""

    kind: str
    value: str | None = None

    def __str__(self) -> str:
        return self.kind if self.value is None else f"{self.kind}: {self.value}"


@dataclass(frozen=True)
class Question:
    id: str
    ask: str
    """The customer's message that is scored."""
    expect: Expectation
    turns: tuple[str, ...] = ()
    """Earlier customer messages of the same conversation, sent first."""
    also: tuple[Expectation, ...] = ()
    """Other outcomes that count as right."""

    @property
    def category(self) -> str:
        return self.expect.kind

    @property
    def expectations(self) -> tuple[Expectation, ...]:
        return (self.expect, *self.also)

    def expected(self) -> str:
        return " | ".join(str(e) for e in self.expectations)


@dataclass(frozen=True)
class Verdict:
    question: Question
    replies: tuple[str, ...]
    """The texts of the bot messages that answered ``question.ask``."""
    right: bool
    got: str
    """What came back, as a label: ``intent:returns``, ``past:gift wrapping``, ``clarify``..."""

    def reply_start(self, chars: int = 70) -> str:
        text = " / ".join(" ".join(r.split()) for r in self.replies) or "(no reply)"
        return text if len(text) <= chars else text[: chars - 1] + "…"


# --- the question file --------------------------------------------------------------------


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    """The questions of a YAML file in the format of ``tests/data/shop_questions.yml``."""
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path}: expected a non-empty list of questions")
    questions: list[Question] = []
    seen: set[str] = set()
    for n, item in enumerate(raw, 1):
        where = f"{path}: question {n}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected a mapping with `ask` and an expectation")
        where += f" ({item.get('id', '?')})"
        unknown = set(item) - {"id", "ask", "turns", "also", *CATEGORIES}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        qid, ask, turns = item.get("id", f"q{n}"), item.get("ask"), item.get("turns", [])
        if not isinstance(qid, str) or not qid or qid in seen:
            raise ValueError(f"{where}: `id` must be a unique non-empty string")
        seen.add(qid)
        if not isinstance(ask, str) or not ask.strip():
            raise ValueError(f"{where}: `ask` must be a non-empty string")
        if not isinstance(turns, list) or not all(isinstance(t, str) and t for t in turns):
            raise ValueError(f"{where}: `turns` must be a list of non-empty strings")
        also = item.get("also", [])
        if not isinstance(also, list):
            raise ValueError(f"{where}: `also` must be a list")
        questions.append(
            Question(
                id=qid,
                ask=ask,
                expect=_expectation(item, where),
                turns=tuple(turns),
                also=tuple(_expectation(a, f"{where} also[{i}]") for i, a in enumerate(also)),
            )
        )
    return questions


def _expectation(item: object, where: str) -> Expectation:
    if item == OUT_OF_SCOPE:
        return Expectation(OUT_OF_SCOPE)
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected {{intent: NAME}}, {{past: TEXT}} or out_of_scope")
    kinds = [k for k in CATEGORIES if k in item]
    if len(kinds) != 1:
        raise ValueError(f"{where}: exactly one of {', '.join(CATEGORIES)} expected")
    kind, value = kinds[0], item[kinds[0]]
    if kind == OUT_OF_SCOPE:
        if value is not True:
            raise ValueError(f"{where}: write `out_of_scope: true`")
        return Expectation(OUT_OF_SCOPE)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: `{kind}` must be a non-empty string")
    return Expectation(kind, value.strip())


# --- judging ------------------------------------------------------------------------------


class Judge:
    """Knows the bot's own texts (bot.yml, its action, its past dialogues) and says whether a
    reply is what a question expects, and what the reply was."""

    def __init__(self, bot: Path = SHOP) -> None:
        from bot.definition import load_bot

        self.folder = bot
        self.definition = d = load_bot(bot)
        self.intents = {i.name: i for i in d.intents}
        self._variants: dict[str, frozenset[str]] = {}
        self._labels: dict[str, str] = {}
        for intent in d.intents:
            response = d.response_for(intent)
            texts = [v.text for v in response.variants] if response else []
            if not texts and (intent.escalate or intent.name == d.human_intent):
                texts = [d.messages.escalate]  # what the engine says for such an intent
            self._variants[intent.name] = frozenset(norm(t) for t in texts)
            for text in texts:
                label = self._labels.get(norm(text))
                name = f"intent:{intent.name}"
                self._labels[norm(text)] = f"{label},{intent.name}" if label else name
        messages = d.messages
        self._oos = frozenset(norm(t) for t in (messages.clarify, messages.out_of_scope))
        for text, label in (
            (messages.clarify, "clarify"),
            (messages.out_of_scope, "out_of_scope"),
            (messages.escalate, "handover"),
            (messages.action_failed, "action failed"),
            (d.handoff.messages.frustration, "handover (frustration)"),
            (d.handoff.messages.action_failed, "handover (action failed)"),
        ):
            self._labels.setdefault(norm(text), label)
        self._notices = tuple(
            re.compile(".+".join(re.escape(part) for part in re.split(r"\{\w+\}", norm(t))))
            for t in (d.handoff.messages.queue, d.handoff.messages.closed)
        )
        self._past = past_replies(bot / DIALOGUES_FILE)
        self._action_replies: dict[tuple[str, str], frozenset[str]] = {}

    # -- checks of the question file against the bot --

    def check(self, questions: Iterable[Question]) -> None:
        """Raise ValueError for an unknown intent or a ``past`` text no agent reply has."""
        for q in questions:
            for e in q.expectations:
                if e.kind == INTENT and e.value not in self.intents:
                    raise ValueError(f"question {q.id}: {self.folder} has no intent {e.value!r}")
                if e.kind == PAST:
                    assert e.value is not None
                    if not any(norm(e.value) in text for text, _ in self._past):
                        raise ValueError(
                            f"question {q.id}: no agent reply in {self.folder / DIALOGUES_FILE} "
                            f"contains {e.value!r}"
                        )

    # -- verdicts --

    def judge(self, question: Question, replies: Sequence[str]) -> Verdict:
        right = any(self.matches(e, question, replies) for e in question.expectations)
        return Verdict(question, tuple(replies), right, self.label(question, replies))

    def matches(self, expect: Expectation, question: Question, replies: Sequence[str]) -> bool:
        texts = [norm(r) for r in replies]
        if expect.kind == OUT_OF_SCOPE:
            return any(t in self._oos for t in texts)
        assert expect.value is not None
        if expect.kind == PAST:
            return any(norm(expect.value) in t for t in texts)
        intent = self.intents[expect.value]
        if intent.action is not None:
            wanted = self.action_reply(intent.name, question)
            return any(t in wanted for t in texts)
        return any(t in self._variants[intent.name] for t in texts)

    def action_reply(self, intent: str, question: Question) -> frozenset[str]:
        """What the intent's action says to ``question.ask``, given the order number (entities)
        in it, else in the latest earlier turn that has one (normalised texts)."""
        key = (intent, question.id)
        if key not in self._action_replies:
            from bot.entities import extract_entities
            from channels.actions import ActionRequest, InProcessActions

            action = self.intents[intent].action
            assert action is not None
            entities: Mapping[str, str] = {}
            for text in (question.ask, *reversed(question.turns)):
                entities = extract_entities(self.definition.entities, text)
                if entities:
                    break
            request = ActionRequest(
                action=action,
                conversation_id=f"judge-{question.id}",
                text=question.ask,
                intent=intent,
                confidence=1.0,
                entities=dict(entities),
            )
            loop = asyncio.new_event_loop()  # private: leaves any current loop alone
            try:
                messages = loop.run_until_complete(InProcessActions(self.definition).run(request))
            finally:
                loop.close()
            self._action_replies[key] = frozenset(norm(m.text) for m in messages)
        return self._action_replies[key]

    def label(self, question: Question, replies: Sequence[str]) -> str:
        """What the replies were: ``intent:NAME``, ``past:TOPIC``, ``clarify``, ..."""
        labels = [self._label_one(question, r) for r in replies]
        shown = [label for label in labels if label != NOTICE] or labels
        return " + ".join(shown) or "(no reply)"

    def _label_one(self, question: Question, reply: str) -> str:
        text = norm(reply)
        if text in self._labels:
            return self._labels[text]
        for intent in self.intents.values():
            if intent.action is not None and text in self.action_reply(intent.name, question):
                return f"intent:{intent.name}"
        if any(p.fullmatch(text) for p in self._notices):
            return NOTICE
        for agent, topic in self._past:
            # a past reply may come back redacted: its start is enough to know it
            if text == agent or (len(text) >= 40 and agent.startswith(text[:40])):
                return f"past:{topic}"
        return "other"


def past_replies(path: Path) -> list[tuple[str, str]]:
    """(normalised agent reply, topic) of a chat-log JSONL file; empty when there is none."""
    if not path.is_file():
        return []
    found: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            record = json.loads(line)
            topic = (record.get("metadata") or {}).get("topic") or record.get("id") or "?"
            for turn in record.get("turns") or []:
                if turn.get("role") == "agent" and turn.get("text"):
                    found.append((norm(turn["text"]), str(topic)))
    return found


# --- asking -------------------------------------------------------------------------------


def ask(client: httpx.Client, base_url: str, question: Question, sender: str) -> list[str]:
    """Send the question's earlier turns then its ``ask`` as ``sender``; the texts of the bot
    messages that answered ``ask``."""
    answer: list[dict[str, Any]] = []
    for text in (*question.turns, question.ask):
        response = client.post(base_url + WEBHOOK, json={"sender": sender, "message": text})
        response.raise_for_status()
        answer = response.json()
    return [str(m.get("text") or "") for m in answer]


def ask_all(
    base_url: str,
    questions: Sequence[Question],
    judge: Judge,
    *,
    timeout_s: float = 120.0,
    progress: Callable[[Verdict], None] | None = None,
) -> list[Verdict]:
    """Ask every question over the REST channel of the server at ``base_url``
    (``http://host:port``), each as a new sender, and judge the answers."""
    run = uuid.uuid4().hex[:8]
    verdicts: list[Verdict] = []
    with httpx.Client(timeout=timeout_s) as client:
        for n, question in enumerate(questions):
            sender = f"questions-{run}-{n}-{question.id}"[:200]
            verdict = judge.judge(question, ask(client, base_url, question, sender))
            verdicts.append(verdict)
            if progress is not None:
                progress(verdict)
    return verdicts


# --- reports ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    right: int
    total: int

    @property
    def share(self) -> float:
        return self.right / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"{self.share:.1%} ({self.right}/{self.total})"


def scores(verdicts: Sequence[Verdict]) -> dict[str, Score]:
    """``all`` and one score per category that has questions."""
    out = {"all": Score(sum(v.right for v in verdicts), len(verdicts))}
    for category in CATEGORIES:
        mine = [v for v in verdicts if v.question.category == category]
        if mine:
            out[category] = Score(sum(v.right for v in mine), len(mine))
    return out


def table(verdicts: Sequence[Verdict]) -> str:
    """One line per question: id, expected, right/WRONG, what came back and its start."""
    rows = [("question", "expected", "verdict", "got", "reply")]
    for v in verdicts:
        expected = v.question.expected()
        expected = expected if len(expected) <= 44 else expected[:43] + "…"
        rows.append(
            (v.question.id, expected, "right" if v.right else "WRONG", v.got, v.reply_start())
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        for r in rows
    )


def score_lines(verdicts: Sequence[Verdict]) -> str:
    return "\n".join(f"{name:>12}: {score}" for name, score in scores(verdicts).items())


def wrong_report(verdicts: Sequence[Verdict]) -> str:
    """Every wrong question: what was asked, what was expected and what came back."""
    lines = []
    for v in verdicts:
        if v.right:
            continue
        q = v.question
        asked = " > ".join(repr(t) for t in (*q.turns, q.ask))
        lines.append(
            f"- {q.id}: {asked}\n    expected {q.expected()}\n    got {v.got}: {v.reply_start(200)}"
        )
    return "\n".join(lines)


def summary(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """A JSON-able summary: the scores and every question's outcome."""
    return {
        "scores": {
            name: {"right": s.right, "total": s.total, "share": round(s.share, 4)}
            for name, s in scores(verdicts).items()
        },
        "questions": [
            {
                "id": v.question.id,
                "category": v.question.category,
                "ask": v.question.ask,
                "turns": list(v.question.turns),
                "expected": [str(e) for e in v.question.expectations],
                "right": v.right,
                "got": v.got,
                "replies": list(v.replies),
            }
            for v in verdicts
        ],
    }
