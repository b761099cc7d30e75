"""Conversation lifecycle: legal transitions pass, illegal ones name both states."""

from __future__ import annotations

import pytest

from bot.errors import IllegalTransition
from bot.types import ConversationStatus as S

LEGAL = [
    (S.BOT, S.WAITING),
    (S.BOT, S.CLOSED),
    (S.WAITING, S.AGENT),
    (S.WAITING, S.BOT),
    (S.WAITING, S.CLOSED),
    (S.AGENT, S.BOT),
    (S.AGENT, S.CLOSED),
]
ILLEGAL = [(a, b) for a in S for b in S if (a, b) not in LEGAL]


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_legal_transitions(current: S, target: S) -> None:
    """Every transition of DESIGN §4 is allowed."""
    assert current.check_transition(target) is target


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_illegal_transitions(current: S, target: S) -> None:
    """Any other move raises, naming the current and the requested status."""
    with pytest.raises(IllegalTransition) as err:
        current.check_transition(target)
    assert repr(current.value) in str(err.value) and repr(target.value) in str(err.value)
