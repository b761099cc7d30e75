"""``Engine``: decides what to say next. Pure: no I/O, no clock, no randomness.

The channels call :meth:`Engine.decide` with the conversation so far, the model outputs of
the new message and the current time, and carry out the :data:`Decision` it returns. When
that is an :class:`Escalate`, they put the conversation in the queue and ask
:meth:`Engine.handoff_notice` what to tell the customer, passing in the queue and the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

from bot import handoff
from bot.entities import extract_entities
from bot.errors import BotError
from bot.types import (
    ActionFailurePolicy,
    BotDefinition,
    Button,
    Candidate,
    CandidateSource,
    Clarify,
    Conversation,
    ConversationStatus,
    Decision,
    Escalate,
    EscalationReason,
    HandoffNotice,
    Intent,
    IntentScore,
    ModelOutputs,
    QueueFacts,
    Reply,
    Role,
    RunAction,
    Thresholds,
)

CLARIFY_OPTIONS = 3
ENTITY_INTENTS = 2
ENTITY_MIN_PROBABILITY = 0.2


class Engine:
    """The dialogue policy of one bot definition. Holds no conversation state."""

    def __init__(self, definition: BotDefinition) -> None:
        self.definition = definition
        self._intents = {intent.name: intent for intent in definition.intents}
        self._negative = tuple(
            (phrase, handoff.words(phrase))
            for phrase in definition.handoff.frustration.negative_words
        )
        self._entities_of = {
            intent.name: frozenset(
                name
                for text in intent.examples
                for name in extract_entities(definition.entities, text)
            )
            for intent in definition.intents
        }
        """The entities an intent's examples mention: what its answer or action is about."""

    def decide(
        self, conversation: Conversation, text: str, outputs: ModelOutputs, now: datetime
    ) -> Decision:
        """What the bot does about the customer's message ``text``.

        ``conversation`` is the history *before* this message; ``outputs`` are the model
        outputs for it; ``now`` is the time the message was received.
        """
        if conversation.status is not ConversationStatus.BOT:
            raise BotError(
                f"the engine only answers conversations in status 'bot'; "
                f"conversation {conversation.id} is {conversation.status.value!r}"
            )
        thresholds = self.definition.thresholds
        top = outputs.top_intent
        out_of_scope = outputs.out_of_scope >= thresholds.out_of_scope
        intent = None
        if top is not None and top.probability >= thresholds.intent and not out_of_scope:
            intent = self._intents.get(top.name)
        if intent is None:
            intent = self._follow_up(conversation, text) or self._named_entity(outputs, text)
        # Hand-overs first: an explicit request or a bot.yml rule, then frustration (an
        # annoyed customer gets a person even when the bot has an answer for them).
        if intent is not None and self._hands_over(intent):
            return self._act_on(intent, conversation, text, outputs)
        frustrated = self._frustration(conversation, text)
        if frustrated is not None:
            return frustrated

        retrieved = _best(outputs.candidates, CandidateSource.RETRIEVAL)
        if retrieved is not None and retrieved.score < _reply_threshold(thresholds, outputs):
            retrieved = None
        weighed = (
            intent is not None
            and retrieved is not None
            and self._answers_with_response(intent)
            and top is not None
            and top.name == intent.name
        )
        if weighed:
            # A past agent answer beats a plain canned response only when it is likelier
            # right: both on the past replies' scale where the model gives the intent's
            # support, else the intent's probability. Too close to tell: ask.
            assert retrieved is not None and intent is not None and top is not None
            ahead = retrieved.score - _answer_score(top)
            if abs(ahead) < thresholds.margin:
                asked = self._which_one(outputs, intent, retrieved)
                if asked is not None:
                    return asked
            if ahead > 0:
                intent = None
        if intent is not None:
            return self._act_on(intent, conversation, text, outputs)
        if retrieved is not None:
            runner_up = _runner_up(outputs.candidates, retrieved)
            if runner_up is not None and retrieved.score - runner_up.score < thresholds.margin:
                asked = self._which_one(outputs, None, retrieved, runner_up)
                if asked is not None:
                    return asked
            return Reply(text=retrieved.text, score=retrieved.score)

        if conversation.low_confidence_streak + 1 >= thresholds.low_confidence_turns:
            return Escalate(
                reason=EscalationReason.LOW_CONFIDENCE, text=self.definition.messages.escalate
            )
        if out_of_scope:
            return Clarify(
                text=self.definition.messages.out_of_scope,
                buttons=self._person_button(),
                out_of_scope=True,
            )
        return Clarify(text=self.definition.messages.clarify, buttons=self._options(outputs))

    def on_action_failure(self, conversation: Conversation, action: str) -> Reply | Escalate:
        """A custom action failed or timed out: apologise, and offer a person (the default)
        or hand over straight away (``handoff.action_failure: escalate``)."""
        policy = self.definition.handoff
        if policy.action_failure is ActionFailurePolicy.ESCALATE:
            return Escalate(
                reason=EscalationReason.ACTION_FAILED,
                text=policy.messages.action_failed,
                detail=f"action {action!r} failed",
            )
        return Reply(text=self.definition.messages.action_failed, buttons=self._person_button())

    def on_error(self, conversation: Conversation) -> Reply:
        """Answering failed inside the platform: apologise and offer a person. Never hands
        over by itself: the conversation's status may be what failed."""
        return Reply(text=self.definition.messages.action_failed, buttons=self._person_button())

    def handoff_notice(self, queue: QueueFacts, now: datetime) -> HandoffNotice:
        """What a customer who just joined the queue is told happens next: their place and
        the expected wait inside opening hours, when the team is back outside them."""
        return handoff.notice(self.definition.handoff, queue, now)

    def _frustration(self, conversation: Conversation, text: str) -> Escalate | None:
        settings = self.definition.handoff.frustration
        message = self.definition.handoff.messages.frustration
        phrase = handoff.find_phrase(text, self._negative)
        if phrase is not None:
            return Escalate(EscalationReason.FRUSTRATION, message, f"said {phrase!r}")
        if settings.rephrase_turns:
            count = handoff.rephrasings(conversation.turns, text, settings.rephrase_similarity)
            if count >= settings.rephrase_turns:
                return Escalate(
                    EscalationReason.FRUSTRATION,
                    message,
                    f"asked the same thing {count + 1} times in a row",
                )
        return None

    def _act_on(
        self, intent: Intent, conversation: Conversation, text: str, outputs: ModelOutputs
    ) -> Decision:
        score = outputs.top_intent.probability if outputs.top_intent else None
        if intent.name == self.definition.human_intent:
            return Escalate(reason=EscalationReason.REQUESTED, text=self._say(intent, conversation))
        if intent.escalate:
            return Escalate(reason=EscalationReason.RULE, text=self._say(intent, conversation))
        if intent.action is not None:
            entities = self._entities_with_earlier(intent, conversation, text)
            return RunAction(name=intent.action, intent=intent.name, entities=entities)
        response = self.definition.response_for(intent)
        if response is None:  # an imported intent with no response: ask, don't guess
            return Clarify(text=self.definition.messages.clarify, buttons=self._options(outputs))
        variant = response.variants[_bot_turns(conversation) % len(response.variants)]
        return Reply(text=variant.text, buttons=variant.buttons, intent=intent.name, score=score)

    def _follow_up(self, conversation: Conversation, text: str) -> Intent | None:
        """A message that names an entity the bot's last answer was about ("and what about
        2002?" after an order's status), with no confident intent of its own: the same
        intent again, for this entity."""
        named = extract_entities(self.definition.entities, text)
        if not named:
            return None
        last = next((t for t in reversed(conversation.turns) if t.role is Role.BOT), None)
        if last is None or last.intent is None or last.intent not in self._intents:
            return None
        if self._entities_of[last.intent].isdisjoint(named):
            return None
        return self._intents[last.intent]

    def _named_entity(self, outputs: ModelOutputs, text: str) -> Intent | None:
        """A message with no confident intent that names an entity (an order number) one
        of its likeliest intents is about ("any news on 3208? haven't heard a thing"): that
        intent. Only among the :data:`ENTITY_INTENTS` likeliest, from
        :data:`ENTITY_MIN_PROBABILITY`: a number alone does not make a question."""
        named = extract_entities(self.definition.entities, text)
        if not named:
            return None
        for scored in outputs.intents[:ENTITY_INTENTS]:
            if scored.probability < ENTITY_MIN_PROBABILITY:
                break
            if not self._entities_of.get(scored.name, frozenset()).isdisjoint(named):
                return self._intents.get(scored.name)
        return None

    def _entities_with_earlier(
        self, intent: Intent, conversation: Conversation, text: str
    ) -> Mapping[str, str]:
        """The message's entities, and those the intent is about that it leaves out taken
        from the customer's earlier turns, newest first ("when did it arrive?" after
        "where is order 2017?")."""
        found = dict(extract_entities(self.definition.entities, text))
        missing = self._entities_of[intent.name] - found.keys()
        for turn in reversed(conversation.turns):
            if not missing:
                break
            if turn.role is Role.CUSTOMER:
                earlier = extract_entities(self.definition.entities, turn.text)
                for name in missing & earlier.keys():
                    found[name] = earlier[name]
                missing -= earlier.keys()
        return MappingProxyType(found)

    def _which_one(
        self,
        outputs: ModelOutputs,
        intent: Intent | None,
        *past: Candidate,
    ) -> Clarify | None:
        """Ask which of two close answers is meant: an intent's topic and the questions
        the past replies answered, as buttons (None when fewer than two can be shown)."""
        buttons: list[Button] = []
        if intent is not None:
            buttons.append(Button(intent.title or humanize(intent.name), intent.examples[0]))
        for candidate in past:
            if candidate.question:
                buttons.append(Button(_short(candidate.question), candidate.question))
        if len(buttons) < 2:
            return None
        return Clarify(
            text=self.definition.messages.clarify,
            buttons=buttons_with(tuple(buttons), self._person_button()),
        )

    def _hands_over(self, intent: Intent) -> bool:
        return intent.name == self.definition.human_intent or intent.escalate

    def _answers_with_response(self, intent: Intent) -> bool:
        """True for an intent the bot answers with text alone (no action, no hand-over)."""
        return (
            intent.name != self.definition.human_intent
            and not intent.escalate
            and intent.action is None
            and self.definition.response_for(intent) is not None
        )

    def _say(self, intent: Intent, conversation: Conversation) -> str:
        response = self.definition.response_for(intent)
        if response is None:
            return self.definition.messages.escalate
        return response.variants[_bot_turns(conversation) % len(response.variants)].text

    def _options(self, outputs: ModelOutputs) -> tuple[Button, ...]:
        buttons: list[Button] = []
        titled = any(i.title for i in self.definition.intents)
        for scored in outputs.intents:
            intent = self._intents.get(scored.name)
            if intent is None or intent.name == self.definition.human_intent:
                continue
            if titled and not intent.title:
                continue  # greetings, thanks...: not something to offer as a topic
            title = intent.title or humanize(intent.name)
            buttons.append(Button(title=title, payload=intent.examples[0]))
            if len(buttons) == CLARIFY_OPTIONS:
                break
        return buttons_with(tuple(buttons), self._person_button())

    def _person_button(self) -> tuple[Button, ...]:
        human = self.definition.human_intent
        if human is None:
            return ()
        payload = self._intents[human].examples[0]
        return (Button(title=self.definition.messages.talk_to_person_button, payload=payload),)


def streak_after(conversation: Conversation, decision: Decision) -> int:
    """The low-confidence streak once ``decision`` has been carried out."""
    if isinstance(decision, Clarify):
        return conversation.low_confidence_streak + 1
    return 0


def humanize(name: str) -> str:
    """``order_status`` -> ``Order status``."""
    words = name.replace("-", " ").replace("_", " ").split()
    return " ".join(words).capitalize()


def buttons_with(first: tuple[Button, ...], extra: tuple[Button, ...]) -> tuple[Button, ...]:
    return first + tuple(b for b in extra if b not in first)


DEFAULT_RETRIEVAL = 0.7
"""The past-reply threshold when neither bot.yml nor the model sets one."""


def _reply_threshold(thresholds: Thresholds, outputs: ModelOutputs) -> float:
    """bot.yml's ``thresholds.retrieval`` where set, else the model's fitted one."""
    if thresholds.retrieval is not None:
        return thresholds.retrieval
    if outputs.reply_threshold is not None:
        return outputs.reply_threshold
    return DEFAULT_RETRIEVAL


def _answer_score(top: IntentScore) -> float:
    return top.support if top.support is not None else top.probability


def _runner_up(candidates: tuple[Candidate, ...], best: Candidate) -> Candidate | None:
    """The best past reply after ``best`` (another answer: candidates are one per group)."""
    pool = [c for c in candidates if c.source is CandidateSource.RETRIEVAL and c is not best]
    return max(pool, key=lambda c: c.score) if pool else None


def _short(question: str, limit: int = 60) -> str:
    """A button title: the question, cut at a word before ``limit`` characters."""
    if len(question) <= limit:
        return question
    return question[: limit - 1].rsplit(" ", 1)[0] + "…"


def _best(candidates: tuple[Candidate, ...], source: CandidateSource) -> Candidate | None:
    pool = [c for c in candidates if c.source is source]
    return max(pool, key=lambda c: c.score) if pool else None


def _bot_turns(conversation: Conversation) -> int:
    return sum(1 for turn in conversation.turns if turn.role is Role.BOT)
