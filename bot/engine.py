"""``Engine``: decides what to say next. Pure: no I/O, no clock, no randomness.

The channels call :meth:`Engine.decide` with the conversation so far, the model outputs of
the new message and the current time, and carry out the :data:`Decision` it returns.
"""

from __future__ import annotations

from datetime import datetime

from bot.entities import extract_entities
from bot.errors import BotError
from bot.types import (
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
    Intent,
    ModelOutputs,
    Reply,
    Role,
    RunAction,
)

CLARIFY_OPTIONS = 3


class Engine:
    """The dialogue policy of one bot definition. Holds no conversation state."""

    def __init__(self, definition: BotDefinition) -> None:
        self.definition = definition
        self._intents = {intent.name: intent for intent in definition.intents}

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

        retrieved = _best(outputs.candidates, CandidateSource.RETRIEVAL)
        if retrieved is not None and retrieved.score < thresholds.retrieval:
            retrieved = None
        if intent is not None and not (
            # Intent and retrieved-reply scores are both calibrated probabilities of being
            # right: a past agent answer beats a plain canned response only when likelier.
            retrieved is not None
            and self._answers_with_response(intent)
            and retrieved.score > outputs.top_intent.probability  # type: ignore[union-attr]
        ):
            return self._act_on(intent, conversation, text, outputs)
        if retrieved is not None:
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

    def on_action_failure(self, conversation: Conversation, action: str) -> Reply:
        """A custom action failed or timed out: apologise and offer a person."""
        return Reply(text=self.definition.messages.action_failed, buttons=self._person_button())

    def _act_on(
        self, intent: Intent, conversation: Conversation, text: str, outputs: ModelOutputs
    ) -> Decision:
        score = outputs.top_intent.probability if outputs.top_intent else None
        if intent.name == self.definition.human_intent:
            return Escalate(reason=EscalationReason.REQUESTED, text=self._say(intent, conversation))
        if intent.escalate:
            return Escalate(reason=EscalationReason.RULE, text=self._say(intent, conversation))
        if intent.action is not None:
            entities = extract_entities(self.definition.entities, text)
            return RunAction(name=intent.action, intent=intent.name, entities=entities)
        response = self.definition.response_for(intent)
        if response is None:  # an imported intent with no response: ask, don't guess
            return Clarify(text=self.definition.messages.clarify, buttons=self._options(outputs))
        variant = response.variants[_bot_turns(conversation) % len(response.variants)]
        return Reply(text=variant.text, buttons=variant.buttons, intent=intent.name, score=score)

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


def _best(candidates: tuple[Candidate, ...], source: CandidateSource) -> Candidate | None:
    pool = [c for c in candidates if c.source is source]
    return max(pool, key=lambda c: c.score) if pool else None


def _bot_turns(conversation: Conversation) -> int:
    return sum(1 for turn in conversation.turns if turn.role is Role.BOT)
