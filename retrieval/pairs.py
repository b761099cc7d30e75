"""(context window -> agent reply) pairs from chat logs, for the index and the ranker.

Every agent turn with at least one customer turn before it is a pair; its context is the
last few turns that people wrote before it (the customer's and the agent's), written most
recent first with the role of each, so that truncating a long context drops the oldest turn.
Bot turns (its answers) and system turns (hand-over and queue notices) are neither context
nor answers: an agent's first reply after a hand-over is paired with the customer's question
from before it, not with "I'll pass you to a colleague", and serving reads its windows the
same way (:func:`message_window`). Only what people wrote is reused. Personal data is redacted
before a text leaves here, and replies that are the same canned answer (up to case,
punctuation, numbers and placeholders) share a ``group`` so that one answer written 5,000
times counts once where it matters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from retrieval.chatlog import ChatLog, TurnRole
from retrieval.index import IndexedTurn

CONTEXT_TURNS = 3
SEPARATOR = " [SEP] "
_SPEAKER = {TurnRole.CUSTOMER: "customer", TurnRole.AGENT: "agent"}
_PEOPLE = frozenset(_SPEAKER)

_PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}|\[[A-Z_]+\]")
_NOT_WORD = re.compile(r"[^\w]+")
_DIGITS = re.compile(r"\d+")


def context_text(turns: Sequence[tuple[TurnRole, str]]) -> str:
    """The context window as the ranker reads it: ``turns`` oldest first -> most recent first
    (turns by anyone but the customer or an agent, the bot's and system notices, are left
    out)."""
    return SEPARATOR.join(
        f"{_SPEAKER[role]}: {text}" for role, text in reversed(turns) if role in _PEOPLE
    )


def message_window(history: Sequence[tuple[str, str]], message: str) -> str:
    """At serving time: the customer's new ``message`` with the turns before it
    (``(role, text)``, oldest first, roles ``customer`` / ``bot`` / ``agent`` / ``system``),
    the same window the ranker was trained on: only what people wrote counts, so the bot's
    turns and system notices neither fill the window nor appear in it."""
    roles = [(TurnRole(role), text) for role, text in history]
    people = [(role, text) for role, text in roles if role in _PEOPLE]
    return context_text([*people[-(CONTEXT_TURNS - 1) :], (TurnRole.CUSTOMER, message)])


def reply_key(text: str) -> str:
    """What two replies share when they are the same canned answer."""
    text = _PLACEHOLDER.sub(" slot ", text).lower()
    text = _DIGITS.sub("0", text)
    return _NOT_WORD.sub(" ", text).strip()


def _question(people: Sequence[tuple[TurnRole, str]], handed_over: set[int], window: int) -> str:
    """What an agent reply answers, where that is not the newest customer turn of its
    window: the newest one that no hand-over followed (a request for a person is not the
    question); "" when it is the newest, or every one in the window was such a request."""
    start = max(0, len(people) - window)
    asked = [i for i in range(start, len(people)) if people[i][0] is TurnRole.CUSTOMER]
    questions = [i for i in asked if i not in handed_over]
    if not questions or not asked or questions[-1] == asked[-1]:
        return ""
    return people[questions[-1]][1]


def dialogue_pairs(
    logs: Iterable[ChatLog],
    *,
    window: int = CONTEXT_TURNS,
    redact: Callable[[str], str] | None = None,
    keep_repeats: bool = False,
) -> list[IndexedTurn]:
    """Every agent turn after at least one customer turn, with the ``window`` turns before it.

    A (context, reply) pair that occurs twice is kept once unless ``keep_repeats``.
    ``group`` numbers the distinct :func:`reply_key` values in order of first appearance.
    """
    clean = redact or (lambda text: text)
    pairs: list[IndexedTurn] = []
    seen: set[tuple[str, str]] = set()
    groups: dict[str, int] = {}
    for log in logs:
        # positions stay those of the log; the windows skip what the bot said
        turns = [(turn.role, clean(turn.text.strip())) for turn in log.turns]
        people: list[tuple[TurnRole, str]] = []
        handed_over: set[int] = set()  # positions in `people` of turns a hand-over followed
        customer_seen = False
        for position, (role, text) in enumerate(turns):
            if role is TurnRole.SYSTEM and people and people[-1][0] is TurnRole.CUSTOMER:
                handed_over.add(len(people) - 1)
            if role not in _PEOPLE:
                continue
            if role is TurnRole.AGENT and customer_seen:
                context = context_text(people[-window:])
                key = (context.lower(), text.lower())
                if keep_repeats or key not in seen:
                    seen.add(key)
                    group = groups.setdefault(reply_key(text), len(groups))
                    question = _question(people, handed_over, window)
                    pairs.append(IndexedTurn(log.id, position, context, text, group, question))
            people.append((role, text))
            customer_seen = customer_seen or role is TurnRole.CUSTOMER
    return pairs
