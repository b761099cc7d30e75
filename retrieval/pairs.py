"""(context window -> agent reply) pairs from chat logs, for the index and the ranker.

Every agent turn with at least one customer turn before it is a pair; its context is the
last few turns before it (any role), written most recent first with the role of each, so
that truncating a long context drops the oldest turn. Bot turns are context, never answers:
only what people wrote is reused. Personal data is redacted before a text leaves here, and
replies that are the same canned answer (up to case, punctuation, numbers and placeholders)
share a ``group`` so that one answer written 5,000 times counts once where it matters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from retrieval.chatlog import ChatLog, TurnRole
from retrieval.index import IndexedTurn

CONTEXT_TURNS = 3
SEPARATOR = " [SEP] "
_SPEAKER = {TurnRole.CUSTOMER: "customer", TurnRole.AGENT: "agent", TurnRole.BOT: "agent"}

_PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}|\[[A-Z_]+\]")
_NOT_WORD = re.compile(r"[^\w]+")
_DIGITS = re.compile(r"\d+")


def context_text(turns: Sequence[tuple[TurnRole, str]]) -> str:
    """The context window as the ranker reads it: ``turns`` oldest first -> most recent first."""
    return SEPARATOR.join(f"{_SPEAKER[role]}: {text}" for role, text in reversed(turns))


def message_window(history: Sequence[tuple[str, str]], message: str) -> str:
    """At serving time: the customer's new ``message`` with the turns before it
    (``(role, text)``, oldest first, roles ``customer`` / ``bot`` / ``agent``), the same
    window the ranker was trained on."""
    turns = [(TurnRole(role), text) for role, text in history[-(CONTEXT_TURNS - 1) :]]
    return context_text([*turns, (TurnRole.CUSTOMER, message)])


def reply_key(text: str) -> str:
    """What two replies share when they are the same canned answer."""
    text = _PLACEHOLDER.sub(" slot ", text).lower()
    text = _DIGITS.sub("0", text)
    return _NOT_WORD.sub(" ", text).strip()


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
        turns = [(turn.role, clean(turn.text.strip())) for turn in log.turns]
        customer_seen = False
        for position, (role, text) in enumerate(turns):
            if role is TurnRole.AGENT and customer_seen:
                context = context_text(turns[max(0, position - window) : position])
                key = (context.lower(), text.lower())
                if keep_repeats or key not in seen:
                    seen.add(key)
                    group = groups.setdefault(reply_key(text), len(groups))
                    pairs.append(IndexedTurn(log.id, position, context, text, group))
            customer_seen = customer_seen or role is TurnRole.CUSTOMER
    return pairs
