"""The engine's policy: pure, table-driven, no models and no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType

import pytest

from bot.engine import Engine, humanize, streak_after
from bot.errors import BotError
from bot.types import (
    ActionFailurePolicy,
    ActionSettings,
    BotDefinition,
    Button,
    Candidate,
    CandidateSource,
    Clarify,
    Conversation,
    ConversationStatus,
    Escalate,
    EscalationReason,
    Frustration,
    Intent,
    IntentScore,
    ModelOutputs,
    QueueFacts,
    Reply,
    Response,
    ResponseVariant,
    Role,
    RunAction,
    Thresholds,
    Turn,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

DEFINITION = BotDefinition(
    name="t",
    intents=(
        Intent("greet", ("hi", "hello")),
        Intent("order_status", ("where is my order",), action="action_order_status"),
        Intent("refunds", ("where is my refund",)),
        Intent("talk_to_human", ("I want a person",)),
        Intent("legal", ("I will sue you",), escalate=True),
    ),
    responses=MappingProxyType(
        {
            "utter_greet": Response(
                "utter_greet", (ResponseVariant("Hi!"), ResponseVariant("Hello!"))
            ),
            "utter_refunds": Response(
                "utter_refunds",
                (ResponseVariant("Refunds take 5 days.", (Button("Returns", "how to return"),)),),
            ),
            "utter_talk_to_human": Response(
                "utter_talk_to_human", (ResponseVariant("Connecting you to a person."),)
            ),
        }
    ),
    thresholds=Thresholds(intent=0.5, retrieval=0.7, out_of_scope=0.5, low_confidence_turns=2),
    actions=ActionSettings(module="actions"),
    entities=MappingProxyType({"order_number": r"\b(\d{4})\b"}),
    human_intent="talk_to_human",
)
ENGINE = Engine(DEFINITION)


def outputs(
    intent: str, p: float, oos: float = 0.0, retrieved: float | None = None
) -> ModelOutputs:
    others = [n.name for n in DEFINITION.intents if n.name != intent]
    rest = (1.0 - p) / len(others)
    candidates = ()
    if retrieved is not None:
        candidates = (Candidate("A past agent answer.", CandidateSource.RETRIEVAL, retrieved),)
    return ModelOutputs(
        intents=(IntentScore(intent, p), *(IntentScore(n, rest) for n in others)),
        out_of_scope=oos,
        candidates=candidates,
    )


def conv(streak: int = 0, bot_turns: int = 0) -> Conversation:
    turns = tuple(Turn(Role.BOT, "x", NOW) for _ in range(bot_turns))
    return Conversation("c1", ConversationStatus.BOT, turns, low_confidence_streak=streak)


@pytest.mark.parametrize(
    ("text", "model", "streak", "expected"),
    [
        ("hi", outputs("greet", 0.9), 0, Reply("Hi!", intent="greet", score=0.9)),
        (
            "where is order 1042",
            outputs("order_status", 0.8),
            0,
            RunAction(
                "action_order_status", "order_status", MappingProxyType({"order_number": "1042"})
            ),
        ),
        (
            "refund?",
            outputs("refunds", 0.7),
            0,
            Reply("Refunds take 5 days.", (Button("Returns", "how to return"),), "refunds", 0.7),
        ),
        (
            "a person please",
            outputs("talk_to_human", 0.8),
            0,
            Escalate(EscalationReason.REQUESTED, "Connecting you to a person."),
        ),
        (
            "lawyer",
            outputs("legal", 0.9),
            0,
            Escalate(EscalationReason.RULE, DEFINITION.messages.escalate),
        ),
        # low confidence, but a retrieved past answer is good enough
        (
            "gift wrap?",
            outputs("greet", 0.3, retrieved=0.82),
            0,
            Reply("A past agent answer.", score=0.82),
        ),
        # one scale: a confident intent's canned response loses to a likelier past answer...
        (
            "refund?",
            outputs("refunds", 0.75, retrieved=0.9),
            0,
            Reply("A past agent answer.", score=0.9),
        ),
        # ... and wins against a less likely one
        (
            "refund?",
            outputs("refunds", 0.85, retrieved=0.8),
            0,
            Reply("Refunds take 5 days.", (Button("Returns", "how to return"),), "refunds", 0.85),
        ),
        # actions and hand-overs are never replaced by a past answer
        (
            "a person please",
            outputs("talk_to_human", 0.8, retrieved=0.95),
            0,
            Escalate(EscalationReason.REQUESTED, "Connecting you to a person."),
        ),
        # low confidence, retrieved answer too weak: clarify with the likeliest intents
        ("hmm", outputs("refunds", 0.3, retrieved=0.5), 0, "clarify"),
        # second low-confidence turn in a row: hand over
        (
            "hmm",
            outputs("refunds", 0.3),
            1,
            Escalate(EscalationReason.LOW_CONFIDENCE, DEFINITION.messages.escalate),
        ),
        # confident intent but out of scope: not acted upon
        ("weather?", outputs("greet", 0.9, oos=0.9), 0, "out_of_scope"),
    ],
)
def test_decide(text: str, model: ModelOutputs, streak: int, expected: object) -> None:
    """Each kind of model output leads to the documented decision."""
    decision = ENGINE.decide(conv(streak), text, model, NOW)
    if expected == "clarify":
        assert isinstance(decision, Clarify) and not decision.out_of_scope
        assert decision.text == DEFINITION.messages.clarify
        titles = [b.title for b in decision.buttons]
        assert titles[0] == "Refunds"  # the likeliest intent first
        assert titles[-1] == DEFINITION.messages.talk_to_person_button
        assert "Talk to human" not in titles  # the human intent is offered once, as a person
    elif expected == "out_of_scope":
        assert isinstance(decision, Clarify) and decision.out_of_scope
        assert decision.buttons == (Button("Talk to a person", "I want a person"),)
    else:
        assert decision == expected


def test_variants_rotate_with_bot_turns() -> None:
    """Responses with several variants do not repeat the same text twice in a row."""
    first = ENGINE.decide(conv(bot_turns=0), "hi", outputs("greet", 0.9), NOW)
    second = ENGINE.decide(conv(bot_turns=1), "hi", outputs("greet", 0.9), NOW)
    assert isinstance(first, Reply) and isinstance(second, Reply)
    assert {first.text, second.text} == {"Hi!", "Hello!"}


def test_decide_is_deterministic() -> None:
    """The same inputs give the same decision: the engine has no hidden state."""
    model = outputs("greet", 0.9)
    assert ENGINE.decide(conv(), "hi", model, NOW) == ENGINE.decide(conv(), "hi", model, NOW)


@pytest.mark.parametrize(
    "status", [ConversationStatus.WAITING, ConversationStatus.AGENT, ConversationStatus.CLOSED]
)
def test_refuses_conversations_not_with_the_bot(status: ConversationStatus) -> None:
    """The bot never answers a conversation a person handles (or a closed one)."""
    with pytest.raises(BotError, match=status.value):
        ENGINE.decide(Conversation("c1", status), "hi", outputs("greet", 0.9), NOW)


def test_action_failure_offers_a_person() -> None:
    """A failed action gets an apology and a button to reach a person."""
    reply = ENGINE.on_action_failure(conv(), "action_order_status")
    assert reply.text == DEFINITION.messages.action_failed
    assert reply.buttons == (Button("Talk to a person", "I want a person"),)


@pytest.mark.parametrize(
    ("decision", "before", "after"),
    [
        (Clarify("?"), 0, 1),
        (Clarify("?", out_of_scope=True), 1, 2),
        (Reply("ok"), 3, 0),
        (Escalate(EscalationReason.LOW_CONFIDENCE, "x"), 1, 0),
    ],
)
def test_streak_after(decision: Clarify | Reply | Escalate, before: int, after: int) -> None:
    """Clarifying extends the low-confidence streak; anything else resets it."""
    assert streak_after(conv(streak=before), decision) == after


@pytest.mark.parametrize(
    ("name", "shown"), [("order_status", "Order status"), ("account-password", "Account password")]
)
def test_humanize(name: str, shown: str) -> None:
    """Intent names become readable button titles."""
    assert humanize(name) == shown


def test_clarify_offers_titled_intents_only_once_any_has_a_title() -> None:
    """With titles in bot.yml, the options read as the bot's author wrote them, and intents
    without one (greetings, thanks) are not offered as topics."""
    intents = tuple(
        replace(i, title="Refund status") if i.name == "refunds" else i for i in DEFINITION.intents
    )
    engine = Engine(replace(DEFINITION, intents=intents))
    model = outputs("greet", 0.3)  # greet is likeliest, refunds next
    decision = engine.decide(conv(0), "hmm", model, NOW)
    assert isinstance(decision, Clarify)
    titles = [b.title for b in decision.buttons]
    assert titles == ["Refund status", DEFINITION.messages.talk_to_person_button]
    assert decision.buttons[0].payload == "where is my refund"
    untitled = ENGINE.decide(conv(0), "hmm", model, NOW)
    assert isinstance(untitled, Clarify)
    assert untitled.buttons[0].title == "Greet"  # no titles: names in words


# --- hand-over triggers --------------------------------------------------------------------

FRUSTRATED = DEFINITION.handoff.messages.frustration
REFUND = Reply("Refunds take 5 days.", (Button("Returns", "how to return"),), "refunds", 0.9)


def asked(*questions: str) -> Conversation:
    """A conversation where the customer asked ``questions``, each answered by the bot."""
    turns: list[Turn] = []
    for question in questions:
        turns += [Turn(Role.CUSTOMER, question, NOW), Turn(Role.BOT, "Refunds take 5 days.", NOW)]
    return Conversation("c1", ConversationStatus.BOT, tuple(turns))


@pytest.mark.parametrize(
    ("conversation", "text", "model", "expected"),
    [
        # negative wording hands over even when the bot knows the answer
        (
            conv(),
            "this is useless, where is my refund",
            outputs("refunds", 0.9),
            Escalate(EscalationReason.FRUSTRATION, FRUSTRATED, "said 'useless'"),
        ),
        (
            conv(),
            "WTF where is my refund",
            outputs("refunds", 0.9),
            Escalate(EscalationReason.FRUSTRATION, FRUSTRATED, "said 'wtf'"),
        ),
        # an explicit request or a rule says why better than the wording does
        (
            conv(),
            "this is useless, I want a person",
            outputs("talk_to_human", 0.9),
            Escalate(EscalationReason.REQUESTED, "Connecting you to a person."),
        ),
        (
            conv(),
            "this is ridiculous, I will sue you",
            outputs("legal", 0.9),
            Escalate(EscalationReason.RULE, DEFINITION.messages.escalate),
        ),
        # the same question a third time, after two bot answers
        (
            asked("where is my refund", "where's my refund?"),
            "where is my refund??",
            outputs("refunds", 0.9),
            Escalate(
                EscalationReason.FRUSTRATION, FRUSTRATED, "asked the same thing 3 times in a row"
            ),
        ),
        # one rephrasing is not frustration
        (asked("where is my refund"), "where's my refund?", outputs("refunds", 0.9), REFUND),
        # nor are two questions about different orders and a refund
        (
            asked("where is my order 1042", "where is my order 2002"),
            "where is my order 4711",
            outputs("refunds", 0.9),
            REFUND,
        ),
        # nor a polite word, nor "helpful"
        (conv(), "that was helpful, thanks", outputs("refunds", 0.9), REFUND),
    ],
)
def test_handoff_triggers(
    conversation: Conversation, text: str, model: ModelOutputs, expected: object
) -> None:
    """Frustration (negative wording, repeated rephrasing) hands over; explicit requests and
    bot.yml rules keep their own reason; near misses are answered."""
    assert ENGINE.decide(conversation, text, model, NOW) == expected


@pytest.mark.parametrize(
    ("turns_setting", "streak", "oos", "escalates"),
    [
        (2, 0, 0.0, False),  # first low-confidence turn: clarify
        (2, 1, 0.0, True),  # second in a row: hand over
        (2, 1, 0.9, True),  # out of scope counts the same
        (2, 0, 0.9, False),
        (1, 0, 0.0, True),  # a bot that hands over at once
        (3, 1, 0.0, False),
        (3, 2, 0.9, True),
    ],
)
def test_low_confidence_turns(turns_setting: int, streak: int, oos: float, escalates: bool) -> None:
    """N low-confidence or out-of-scope turns in a row hand over; fewer ask again."""
    thresholds = replace(DEFINITION.thresholds, low_confidence_turns=turns_setting)
    engine = Engine(replace(DEFINITION, thresholds=thresholds))
    decision = engine.decide(conv(streak), "hmm", outputs("refunds", 0.3, oos=oos), NOW)
    if escalates:
        assert decision == Escalate(EscalationReason.LOW_CONFIDENCE, DEFINITION.messages.escalate)
    else:
        assert isinstance(decision, Clarify) and decision.out_of_scope is (oos > 0.5)


@pytest.mark.parametrize(
    ("frustration", "conversation", "text"),
    [
        (Frustration(negative_words=()), conv(), "this is useless, where is my refund"),
        (Frustration(negative_words=("rubbish",)), conv(), "this is useless, where's my refund"),
        (
            Frustration(rephrase_turns=0),
            asked("where is my refund", "where is my refund"),
            "where is my refund",
        ),
        (
            Frustration(rephrase_turns=3),
            asked("where is my refund", "where is my refund"),
            "where is my refund",
        ),
        (
            Frustration(rephrase_similarity=1.0),
            asked("where is my refund", "where's my refund?"),
            "where is my refund??",
        ),
    ],
)
def test_frustration_settings(
    frustration: Frustration, conversation: Conversation, text: str
) -> None:
    """bot.yml can change the negative words, the rephrasings needed and the similarity,
    or turn either trigger off."""
    policy = replace(DEFINITION.handoff, frustration=frustration)
    engine = Engine(replace(DEFINITION, handoff=policy))
    assert engine.decide(conversation, text, outputs("refunds", 0.9), NOW) == REFUND


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (
            ActionFailurePolicy.OFFER,
            Reply(
                DEFINITION.messages.action_failed, (Button("Talk to a person", "I want a person"),)
            ),
        ),
        (
            ActionFailurePolicy.ESCALATE,
            Escalate(
                EscalationReason.ACTION_FAILED,
                DEFINITION.handoff.messages.action_failed,
                "action 'action_order_status' failed",
            ),
        ),
    ],
)
def test_action_failure_policy(policy: ActionFailurePolicy, expected: object) -> None:
    """A failed action offers a person by default, or hands over when bot.yml says so."""
    engine = Engine(replace(DEFINITION, handoff=replace(DEFINITION.handoff, action_failure=policy)))
    assert engine.on_action_failure(conv(), "action_order_status") == expected


def test_errors_never_hand_over() -> None:
    """An internal error apologises and offers a person, whatever the action-failure policy."""
    policy = replace(DEFINITION.handoff, action_failure=ActionFailurePolicy.ESCALATE)
    engine = Engine(replace(DEFINITION, handoff=policy))
    assert engine.on_error(conv()) == Reply(
        DEFINITION.messages.action_failed, (Button("Talk to a person", "I want a person"),)
    )


def test_handoff_notice_uses_the_bot_policy() -> None:
    """The engine composes the queue notice from the facts the channels pass in."""
    notice = ENGINE.handoff_notice(QueueFacts(position=2), NOW)
    assert notice.open and notice.position == 2 and notice.expected_wait_s == 360
    assert notice.text == (
        "You are number 2 in the queue; an agent usually answers within about 6 minutes."
    )


def test_a_past_reply_beats_an_intent_whose_answer_fits_the_message_less() -> None:
    """With the model's support (the intent's answer on the past replies' scale), a past
    reply likelier right wins over a probable intent that fits the message worse; without
    support the intent's probability is what the reply must beat."""
    model = outputs("refunds", 0.9, retrieved=0.8)
    assert isinstance(ENGINE.decide(conv(), "q", model, NOW), Reply)
    assert ENGINE.decide(conv(), "q", model, NOW).intent == "refunds"  # type: ignore[union-attr]
    top = replace(model.intents[0], support=0.4)
    supported = replace(model, intents=(top, *model.intents[1:]))
    assert ENGINE.decide(conv(), "q", supported, NOW) == Reply("A past agent answer.", score=0.8)


@pytest.mark.parametrize(
    ("configured", "fitted", "score", "sent"),
    [
        (None, 0.45, 0.5, True),  # the model's fitted threshold
        (None, 0.55, 0.5, False),
        (0.7, 0.45, 0.5, False),  # bot.yml's wins where it is set
        (None, None, 0.65, False),  # neither: the default 0.7
        (None, None, 0.75, True),
    ],
)
def test_the_past_reply_threshold_is_bot_yml_s_else_the_models_fitted_one(
    configured: float | None, fitted: float | None, score: float, sent: bool
) -> None:
    """``thresholds.retrieval`` left out of bot.yml: the threshold the model fitted in
    training decides whether a past reply is sent."""
    engine = Engine(
        replace(DEFINITION, thresholds=replace(DEFINITION.thresholds, retrieval=configured))
    )
    model = replace(outputs("greet", 0.2, oos=0.9, retrieved=score), reply_threshold=fitted)
    decision = engine.decide(conv(), "q", model, NOW)
    assert (decision == Reply("A past agent answer.", score=score)) is sent


# order_status's examples name an order number: what its action is about
NUMBERED = Engine(
    replace(
        DEFINITION,
        intents=tuple(
            replace(i, examples=(*i.examples, "status of order 1042"))
            if i.name == "order_status"
            else i
            for i in DEFINITION.intents
        ),
    )
)


def test_a_follow_up_naming_an_entity_repeats_the_last_answers_intent() -> None:
    """ "and 2002?" after an order's status: no confident intent of its own, an entity the
    last answer's intent is about -> that intent again, for the new entity."""
    history = (
        Turn(Role.CUSTOMER, "where is my order 1043", NOW),
        Turn(Role.BOT, "Order 1043 has shipped.", NOW, intent="order_status"),
    )
    conversation = Conversation("c1", ConversationStatus.BOT, history)
    vague = outputs("greet", 0.3, oos=0.9)
    decision = NUMBERED.decide(conversation, "and what about 2002?", vague, NOW)
    assert decision == RunAction(
        "action_order_status", intent="order_status", entities={"order_number": "2002"}
    )
    # no entity, or a last answer about something else: no follow-up
    assert not isinstance(NUMBERED.decide(conversation, "and the other?", vague, NOW), RunAction)
    other = Conversation(
        "c1", ConversationStatus.BOT, (history[0], replace(history[1], intent="greet"))
    )
    assert not isinstance(NUMBERED.decide(other, "and 2002?", vague, NOW), RunAction)


def test_an_action_takes_an_entity_left_out_from_the_customers_earlier_turns() -> None:
    """ "when did it arrive?" after "where is order 2017?": the action gets 2017."""
    history = (
        Turn(Role.CUSTOMER, "where is order 2017?", NOW),
        Turn(Role.BOT, "It shipped.", NOW, intent="order_status"),
        Turn(Role.CUSTOMER, "thanks, and 2018 too", NOW),
    )
    conversation = Conversation("c1", ConversationStatus.BOT, history)
    decision = NUMBERED.decide(
        conversation, "when did it arrive?", outputs("order_status", 0.9), NOW
    )
    assert decision == RunAction(
        "action_order_status", intent="order_status", entities={"order_number": "2018"}
    )


def test_close_answers_are_asked_about_not_guessed() -> None:
    """An intent's answer and a past reply within the margin, or two past replies: the
    bot asks which is meant, with the intent's topic and the past question as buttons."""
    past = Candidate(
        "Gift wrap is 3.50.", CandidateSource.RETRIEVAL, 0.78, question="do you gift wrap?"
    )
    model = outputs("refunds", 0.9)
    top = replace(model.intents[0], support=0.75)
    close = replace(model, intents=(top, *model.intents[1:]), candidates=(past,))
    decision = ENGINE.decide(conv(), "q", close, NOW)
    assert isinstance(decision, Clarify)
    assert [b.payload for b in decision.buttons[:2]] == ["where is my refund", "do you gift wrap?"]
    second = Candidate("We ship to the UK.", CandidateSource.RETRIEVAL, 0.76, question="UK?")
    two = replace(outputs("greet", 0.2, oos=0.9), candidates=(past, second))
    decision = ENGINE.decide(conv(), "q", two, NOW)
    assert isinstance(decision, Clarify)
    assert [b.payload for b in decision.buttons[:2]] == ["do you gift wrap?", "UK?"]
    apart = replace(two, candidates=(past, replace(second, score=0.3)))
    assert ENGINE.decide(conv(), "q", apart, NOW) == Reply("Gift wrap is 3.50.", score=0.78)


def test_a_first_off_topic_message_gets_the_out_of_scope_reply_not_a_person() -> None:
    """Hand-over needs the configured streak (2 here) or an explicit request."""
    decision = ENGINE.decide(conv(), "what's the weather?", outputs("greet", 0.2, oos=0.95), NOW)
    assert isinstance(decision, Clarify) and decision.out_of_scope
    again = ENGINE.decide(conv(streak=1), "and tomorrow?", outputs("greet", 0.2, oos=0.95), NOW)
    assert isinstance(again, Escalate)


def test_a_named_entity_picks_the_likely_intent_it_belongs_to() -> None:
    """No confident intent, but the message names an order number and order_status (whose
    examples name one) is among the two likeliest intents: its action runs. A number with
    no such intent near the top, or too unlikely, changes nothing."""
    vague = outputs("order_status", 0.3, oos=0.9)
    decision = NUMBERED.decide(conv(), "any nws on 3208? nothing since i ordred", vague, NOW)
    assert decision == RunAction(
        "action_order_status", intent="order_status", entities={"order_number": "3208"}
    )
    unlikely = outputs("order_status", 0.1, oos=0.9)
    assert not isinstance(NUMBERED.decide(conv(), "train 4711 was late", unlikely, NOW), RunAction)
    assert not isinstance(ENGINE.decide(conv(), "any news on 3208?", vague, NOW), RunAction)
