"""(context window -> agent reply) pairs: which turns, which context, which group."""

from __future__ import annotations

from retrieval.chatlog import ChatLog, ChatTurn, TurnRole
from retrieval.pairs import context_text, dialogue_pairs, reply_key
from retrieval.redact import Redactor

C, A, B = TurnRole.CUSTOMER, TurnRole.AGENT, TurnRole.BOT


def chat(cid: str, *turns: tuple[TurnRole, str]) -> ChatLog:
    return ChatLog(cid, "web", None, tuple(ChatTurn(role, text) for role, text in turns))


def test_every_agent_turn_after_a_customer_turn_with_three_turns_of_context() -> None:
    log = chat(
        "c1",
        (A, "Welcome!"),  # no customer turn before it: not a pair
        (C, "hi"),
        (C, "where is my order"),
        (A, "Let me check."),
        (A, "It ships today."),  # agent after agent: still a pair
        (C, "thanks"),
        (B, "You're welcome"),  # bot turns are neither context nor answers
        (A, "Anything else?"),
    )
    pairs = dialogue_pairs([log])
    assert [(p.turn, p.reply) for p in pairs] == [
        (3, "Let me check."),
        (4, "It ships today."),
        (7, "Anything else?"),
    ]
    # most recent first, so truncating a long context drops the oldest turn
    assert (
        pairs[0].context == "customer: where is my order [SEP] customer: hi [SEP] agent: Welcome!"
    )
    assert pairs[2].context == context_text(
        [(A, "Let me check."), (A, "It ships today."), (C, "thanks")]
    )
    assert pairs[2].context.startswith("customer: thanks [SEP] agent: It ships today.")
    assert "welcome" not in pairs[2].context
    assert {p.conversation_id for p in pairs} == {"c1"}


def test_an_agents_first_reply_after_a_hand_over_answers_the_question_before_it() -> None:
    """The bot's hand-over and queue notices between a question and the agent's answer do
    not become the answer's context: the customer's question does."""
    log = chat(
        "h1",
        (C, "can I pick my order up in Hamburg?"),
        (B, "I'll pass you to one of my colleagues."),
        (B, "You are number 2 in the queue."),
        (A, "Yes, click & collect at our Hamburg warehouse is free."),
    )
    (pair,) = dialogue_pairs([log])
    assert pair.context == "customer: can I pick my order up in Hamburg?"
    assert pair.turn == 3


def test_near_duplicate_replies_share_a_group_and_repeats_are_kept_once() -> None:
    logs = [
        chat("a", (C, "bye"), (A, "Thank you and goodbye.")),
        chat("b", (C, "bye"), (A, "Thank you and goodbye.")),  # same pair: once
        chat("c", (C, "cheers"), (A, "thank you, and goodbye!")),
        chat("d", (C, "status?"), (A, "Order 1234 ships on {{Date}}.")),
        chat("e", (C, "status??"), (A, "Order 98 ships on [DATE].")),
        chat("f", (C, "refund?"), (A, "Your refund is on its way.")),
    ]
    pairs = dialogue_pairs(logs)
    assert [p.conversation_id for p in pairs] == ["a", "c", "d", "e", "f"]
    groups = [p.group for p in pairs]
    assert groups[0] == groups[1] and groups[2] == groups[3]
    assert len(set(groups)) == 3
    assert len(dialogue_pairs(logs, keep_repeats=True)) == 6
    assert reply_key("Order 1234 ships on {{Date}}.") == reply_key("order 98 ships on [DATE]")


def test_redaction_reaches_context_and_reply() -> None:
    log = chat(
        "r", (C, "I'm jane@mail.example, call 415 555 2671"), (A, "Mailed jane@mail.example")
    )
    (pair,) = dialogue_pairs([log], redact=Redactor())
    assert pair.context == "customer: I'm [EMAIL], call [PHONE]"
    assert pair.reply == "Mailed [EMAIL]"
