"""(customer turn -> agent reply) pairs from chat logs, for the index and the ranker."""

from __future__ import annotations

from collections.abc import Iterable

from retrieval.chatlog import ChatLog, TurnRole
from retrieval.index import IndexedTurn


def reply_pairs(logs: Iterable[ChatLog]) -> list[IndexedTurn]:
    """Every agent turn that follows a customer turn, keyed by that customer turn.

    Consecutive customer turns are joined (customers often split a question over several
    messages). Bot turns are not treated as answers: only what people wrote is reused.
    """
    pairs: list[IndexedTurn] = []
    seen: set[tuple[str, str]] = set()
    for log in logs:
        pending: list[str] = []
        for position, turn in enumerate(log.turns):
            if turn.role == TurnRole.CUSTOMER:
                pending.append(turn.text.strip())
            elif turn.role == TurnRole.AGENT and pending:
                context = " ".join(pending)
                key = (context.lower(), turn.text.strip().lower())
                if key not in seen:
                    seen.add(key)
                    pairs.append(IndexedTurn(log.id, position, context, turn.text.strip()))
                pending = []
            else:
                pending = []
    return pairs
