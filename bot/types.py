"""Domain values shared by the engine, the channels and training.

Everything here is a frozen dataclass or an enum: typed values cross every boundary, and
pydantic models exist only for the wire format (``channels/protocol.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

from bot.errors import IllegalTransition


class Role(StrEnum):
    CUSTOMER = "customer"
    BOT = "bot"
    AGENT = "agent"


class ConversationStatus(StrEnum):
    """Lifecycle of a conversation (DESIGN §4): bot -> waiting -> agent -> bot | closed."""

    BOT = "bot"
    WAITING = "waiting"
    AGENT = "agent"
    CLOSED = "closed"

    def check_transition(self, target: ConversationStatus) -> ConversationStatus:
        """Return ``target`` if moving there from ``self`` is legal, else raise."""
        if target not in _TRANSITIONS[self]:
            allowed = ", ".join(sorted(s.value for s in _TRANSITIONS[self])) or "none"
            raise IllegalTransition(
                f"cannot move a conversation from {self.value!r} to {target.value!r}; "
                f"from {self.value!r} the allowed statuses are: {allowed}"
            )
        return target


_TRANSITIONS: dict[ConversationStatus, frozenset[ConversationStatus]] = {
    ConversationStatus.BOT: frozenset({ConversationStatus.WAITING, ConversationStatus.CLOSED}),
    ConversationStatus.WAITING: frozenset(
        {ConversationStatus.AGENT, ConversationStatus.BOT, ConversationStatus.CLOSED}
    ),
    ConversationStatus.AGENT: frozenset({ConversationStatus.BOT, ConversationStatus.CLOSED}),
    ConversationStatus.CLOSED: frozenset(),
}


# --- the bot definition (bot.yml) -------------------------------------------------------


@dataclass(frozen=True)
class Button:
    title: str
    payload: str


@dataclass(frozen=True)
class ResponseVariant:
    text: str
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True)
class Response:
    name: str
    variants: tuple[ResponseVariant, ...]


@dataclass(frozen=True)
class Intent:
    name: str
    examples: tuple[str, ...]
    response: str | None = None
    """Name of the response to answer with (default ``utter_<intent>`` when it exists)."""
    action: str | None = None
    """Name of a custom (rasa-sdk) action to run instead of a response."""
    escalate: bool = False
    """Always hand this intent to a person."""
    title: str | None = None
    """What a customer sees on the intent's button when the bot asks which one is meant
    (default: the name in words); an intent with a title is the only kind offered when any
    intent of the bot has one."""


@dataclass(frozen=True)
class Thresholds:
    intent: float = 0.5
    """Minimum calibrated probability of the top intent to act on it."""
    retrieval: float | None = None
    """Minimum probability of a retrieved agent reply to send it; None: the threshold the
    model fitted on held-out data in training (``bot.engine.DEFAULT_RETRIEVAL`` without one)."""
    out_of_scope: float = 0.5
    """Out-of-scope score above which a message is treated as out of scope."""
    low_confidence_turns: int = 2
    """Consecutive low-confidence / out-of-scope turns after which the bot escalates."""
    margin: float = 0.05
    """When the two best different answers (an intent's and a past reply, or two past
    replies) are this close, the bot asks which one is meant instead of picking one."""


@dataclass(frozen=True)
class ActionSettings:
    module: str | None = None
    """Python module (in the bot folder) with rasa-sdk actions, run in-process."""
    url: str | None = None
    """Remote rasa-sdk action server webhook URL, e.g. ``http://127.0.0.1:5055/webhook``."""
    timeout_s: float = 5.0


@dataclass(frozen=True)
class Messages:
    """What the bot says in situations no intent covers."""

    clarify: str = "Sorry, I'm not sure I understood. Did you mean one of these?"
    out_of_scope: str = "Sorry, I can't help with that here."
    escalate: str = "I'm passing you to a member of our team. Someone will be with you shortly."
    action_failed: str = (
        "Sorry, something went wrong on our side while I was looking that up. "
        "Would you like to talk to a person?"
    )
    talk_to_person_button: str = "Talk to a person"


@dataclass(frozen=True)
class Redaction:
    """Personal data removed from past chats before they are indexed or trained on."""

    order_number: str | None = None
    """Regular expression of the company's order numbers (none by default)."""
    keep: tuple[str, ...] = ()
    """The company's own emails and phone numbers, never redacted."""
    phone_region: str = "US"
    """Country assumed for phone numbers written without a country code."""


DEFAULT_NEGATIVE_WORDS: tuple[str, ...] = (
    "useless",
    "pointless",
    "unhelpful",
    "not helpful",
    "not helping",
    "isn't helping",
    "doesn't help",
    "ridiculous",
    "waste of time",
    "stupid bot",
    "you don't understand",
    "you're not listening",
    "not what i asked",
    "fed up",
    "wtf",
    "fuck",
    "fucking",
    "shit",
    "bullshit",
    "crap",
)
"""English words and phrases that show a customer has had enough of the bot."""


@dataclass(frozen=True)
class Frustration:
    """When the bot hands over because the customer is getting frustrated."""

    rephrase_similarity: float = 0.75
    """Lexical similarity (0-1) at or above which a message repeats the customer's previous
    one (after a bot answer in between)."""
    rephrase_turns: int = 2
    """Rephrasings in a row that hand over: 2 means the same question asked three times;
    0 turns the rephrasing trigger off."""
    negative_words: tuple[str, ...] = DEFAULT_NEGATIVE_WORDS
    """Words or phrases (matched as whole words, case-insensitive) that hand over; empty
    turns the trigger off."""


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60


@dataclass(frozen=True)
class OpeningHours:
    """When agents answer, in the team's time zone."""

    timezone: str
    """An IANA time zone name, e.g. ``Europe/Berlin``."""
    weekly: tuple[tuple[tuple[int, int], ...], ...]
    """Seven entries, Monday first: each a sorted tuple of ``(start, end)`` in minutes since
    local midnight (``end`` may be 1440); an empty tuple is a closed day."""
    closed_dates: frozenset[date] = frozenset()
    """Public holidays and other days the team does not work."""


class ActionFailurePolicy(StrEnum):
    OFFER = "offer"
    """Apologise and offer a person with a button (the customer decides)."""
    ESCALATE = "escalate"
    """Apologise and hand over straight away."""


@dataclass(frozen=True)
class HandoffMessages:
    """What the customer is told when the bot hands over. ``{placeholders}`` are filled in:
    ``queue``: ``position``, ``wait``; ``closed``: ``day``, ``time``, ``timezone``."""

    # Said to an upset customer, whatever upset them (a broken parcel as often as the bot):
    # it takes them seriously without blaming anyone.
    frustration: str = (
        "I'm sorry about this. Let me pass you to one of my colleagues; "
        "they'll see everything we've said so far."
    )
    action_failed: str = (
        "Sorry, something went wrong on our side while I was looking that up. "
        "I'm passing you to one of my colleagues, who can check it for you."
    )
    queue: str = (
        "You are number {position} in the queue; an agent usually answers within about {wait}."
    )
    closed: str = (
        "Our team is back {day} at {time} ({timezone}). We'll answer you right here, so you "
        "can close this page: the conversation is kept."
    )


@dataclass(frozen=True)
class Handoff:
    """The hand-over policy beyond intents and thresholds (``handoff:`` in bot.yml)."""

    frustration: Frustration = Frustration()
    opening_hours: OpeningHours | None = None
    """When agents answer; ``None``: always (the customer is only told the queue)."""
    average_handle_minutes: float = 3.0
    """How long an agent takes per waiting customer, for the expected wait (position x this),
    unless the channels pass an observed value."""
    action_failure: ActionFailurePolicy = ActionFailurePolicy.OFFER
    messages: HandoffMessages = HandoffMessages()


@dataclass(frozen=True)
class BotDefinition:
    name: str
    intents: tuple[Intent, ...]
    responses: Mapping[str, Response]
    thresholds: Thresholds = Thresholds()
    actions: ActionSettings = ActionSettings()
    entities: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Entity name -> regular expression; the first match (group 1 if any) is the value."""
    messages: Messages = Messages()
    human_intent: str | None = None
    """The intent that means "I want a person" (an escalation with reason ``requested``)."""
    root: Path | None = None
    """Folder the definition was loaded from, if any."""
    redaction: Redaction = Redaction()
    handoff: Handoff = Handoff()

    def intent(self, name: str) -> Intent:
        for intent in self.intents:
            if intent.name == name:
                return intent
        raise KeyError(name)

    def response_for(self, intent: Intent) -> Response | None:
        name = intent.response or f"utter_{intent.name}"
        return self.responses.get(name)


# --- a conversation as the engine sees it ------------------------------------------------


@dataclass(frozen=True)
class Turn:
    role: Role
    text: str
    ts: datetime
    intent: str | None = None
    """For a bot turn: the intent it answered or acted on (None: not an intent's)."""


@dataclass(frozen=True)
class Conversation:
    id: str
    status: ConversationStatus
    turns: tuple[Turn, ...] = ()
    low_confidence_streak: int = 0
    """Consecutive bot turns before this one that ended in clarify / out-of-scope."""


# --- model outputs, computed before the engine is called ---------------------------------


@dataclass(frozen=True)
class IntentScore:
    name: str
    probability: float
    support: float | None = None
    """The probability that this intent's answer is right on the past replies' scale
    (how near its examples and its answer are to the message); None: not known."""


class CandidateSource(StrEnum):
    INTENT = "intent"
    RETRIEVAL = "retrieval"


@dataclass(frozen=True)
class Candidate:
    """A reply the ranker scored against the context; ``score`` is in [0, 1]."""

    text: str
    source: CandidateSource
    score: float
    intent: str | None = None
    conversation_id: str | None = None
    question: str | None = None
    """For a past reply: what the customer asked when it was given (a clarify button)."""


@dataclass(frozen=True)
class ModelOutputs:
    intents: tuple[IntentScore, ...]
    """Sorted by probability, highest first."""
    out_of_scope: float
    candidates: tuple[Candidate, ...] = ()
    """Sorted by score, highest first."""
    reply_threshold: float | None = None
    """The past-reply threshold the model fitted in training (None: it has none)."""

    @property
    def top_intent(self) -> IntentScore | None:
        return self.intents[0] if self.intents else None


# --- decisions ---------------------------------------------------------------------------


class EscalationReason(StrEnum):
    REQUESTED = "requested"
    LOW_CONFIDENCE = "low_confidence"
    RULE = "rule"
    ACTION_FAILED = "action_failed"
    FRUSTRATION = "frustration"


@dataclass(frozen=True)
class Reply:
    text: str
    buttons: tuple[Button, ...] = ()
    intent: str | None = None
    score: float | None = None


@dataclass(frozen=True)
class RunAction:
    name: str
    intent: str
    entities: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Clarify:
    text: str
    buttons: tuple[Button, ...] = ()
    out_of_scope: bool = False


@dataclass(frozen=True)
class Escalate:
    reason: EscalationReason
    text: str
    detail: str | None = None
    """Why, for the agent: the negative phrase seen, how often the customer rephrased..."""


Decision = Reply | RunAction | Clarify | Escalate


# --- telling the customer what happens after a hand-over ----------------------------------


@dataclass(frozen=True)
class QueueFacts:
    """What the channels know about the queue when a conversation joins it."""

    position: int
    """1 for the first in line; the conversation that just joined counts itself."""
    average_handle_s: float | None = None
    """Observed seconds an agent spends per waiting customer; ``None``: use the configured
    ``handoff.average_handle_minutes``."""


@dataclass(frozen=True)
class HandoffNotice:
    """The message that tells a customer who was just handed over what happens next."""

    text: str
    open: bool
    """Whether the team is working now."""
    position: int
    expected_wait_s: int | None = None
    """Inside opening hours: the estimated wait."""
    back_at: datetime | None = None
    """Outside opening hours: when the team is back (in the team's time zone)."""
