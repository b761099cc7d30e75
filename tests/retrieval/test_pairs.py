"""(context window -> agent reply) pairs: which turns, which context, which group."""

from __future__ import annotations

from retrieval.chatlog import ChatLog, ChatTurn, TurnRole
from retrieval.pairs import context_text, dialogue_pairs, message_window, reply_key
from retrieval.redact import Redactor

C, A, B, S = TurnRole.CUSTOMER, TurnRole.AGENT, TurnRole.BOT, TurnRole.SYSTEM


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


def test_system_notices_are_neither_context_nor_answers() -> None:
    """`system` turns (hand-over and queue notices, as `frontdesk export` writes them) are
    skipped like the bot's: never a context turn, never an answer, never the customer's
    turn that lets an agent's reply count as a pair."""
    log = chat(
        "s1",
        (S, "You are number 1 in the queue."),  # before any customer turn
        (A, "Hi, I'm Ann."),  # no customer turn before it: not a pair, notices don't count
        (C, "do you sell replacement lamp shades?"),
        (B, "Sorry, I'm not quite sure what you mean."),
        (S, "I'll pass you to one of my colleagues."),
        (S, "Our team is back Monday at 09:00 (Europe/Berlin)."),
        (A, "Yes, in three sizes."),
        (S, "The conversation was handed back."),
        (A, "Anything else?"),
    )
    pairs = dialogue_pairs([log])
    assert [(p.turn, p.reply) for p in pairs] == [
        (6, "Yes, in three sizes."),
        (8, "Anything else?"),
    ]
    assert (
        pairs[0].context
        == "customer: do you sell replacement lamp shades? [SEP] agent: Hi, I'm Ann."
    )
    assert pairs[1].context == context_text(
        [
            (A, "Hi, I'm Ann."),
            (C, "do you sell replacement lamp shades?"),
            (A, "Yes, in three sizes."),
        ]
    )
    assert not any("queue" in p.context or "colleagues" in p.context for p in pairs)
    assert dialogue_pairs([chat("s2", (S, "You are number 1 in the queue."), (A, "Hello!"))]) == []
    # serving reads its windows the same way: the notices neither show nor take a place
    history = [
        ("customer", "do you sell lamp shades?"),
        ("system", "I'll pass you to one of my colleagues."),
        ("system", "You are number 2 in the queue."),
        ("bot", "Sorry, I'm not sure."),
    ]
    assert (
        message_window(history, "hello?")
        == "customer: hello? [SEP] customer: do you sell lamp shades?"
    )


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


def test_a_reply_after_a_hand_over_names_the_question_not_the_request_for_a_person() -> None:
    """The clarify button of a past reply shows what the customer asked: after a hand-over
    (a system notice after the request), the question before the request."""
    S = TurnRole.SYSTEM
    log = chat(
        "h2",
        (C, "do you buy back used furniture?"),
        (B, "Sorry, I'm not sure what you mean."),
        (C, "I want to talk to a person"),
        (S, "I'll pass you to one of my colleagues."),
        (A, "Yes, through our Second Round scheme."),
    )
    (pair,) = dialogue_pairs([log])
    assert pair.question == "do you buy back used furniture?"
    plain = chat("p1", (C, "where is my parcel?"), (A, "On its way."))
    assert dialogue_pairs([plain])[0].question == ""  # the newest customer turn: not stored
