"""Load and validate a bot folder (``bot.yml``) into a :class:`BotDefinition`.

The file format is described by pydantic models here (it is a wire format, like the
websocket frames); they are converted to the frozen domain dataclasses before anything
else sees them. Every error names the file, the line and what was expected.
"""

from __future__ import annotations

import re
import string
from datetime import date
from itertools import pairwise
from pathlib import Path
from types import MappingProxyType
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from bot import handoff
from bot.errors import DefinitionError
from bot.types import (
    DEFAULT_NEGATIVE_WORDS,
    MINUTES_PER_DAY,
    WEEKDAYS,
    ActionFailurePolicy,
    ActionSettings,
    BotDefinition,
    Button,
    Frustration,
    Handoff,
    HandoffMessages,
    Intent,
    Messages,
    OpeningHours,
    Redaction,
    Response,
    ResponseVariant,
    Thresholds,
)
from bot.yamlsource import YamlSource

BOT_FILE = "bot.yml"

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_\-]*$")]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ButtonFile(_Strict):
    title: NonEmpty
    payload: NonEmpty


class VariantFile(_Strict):
    text: NonEmpty
    buttons: list[ButtonFile] = []


class IntentFile(_Strict):
    examples: list[NonEmpty] = Field(min_length=1)
    response: Name | None = None
    action: Name | None = None
    escalate: bool = False
    title: NonEmpty | None = None


class ThresholdsFile(_Strict):
    intent: Probability = Thresholds.intent
    retrieval: Probability | None = Thresholds.retrieval
    out_of_scope: Probability = Thresholds.out_of_scope
    low_confidence_turns: Annotated[int, Field(ge=1)] = Thresholds.low_confidence_turns
    margin: Annotated[float, Field(ge=0, le=1)] = Thresholds.margin


class ActionsFile(_Strict):
    module: Name | None = None
    url: Annotated[str, StringConstraints(pattern=r"^https?://")] | None = None
    timeout_s: Annotated[float, Field(gt=0, le=120)] = ActionSettings.timeout_s


class MessagesFile(_Strict):
    clarify: NonEmpty = Messages.clarify
    out_of_scope: NonEmpty = Messages.out_of_scope
    escalate: NonEmpty = Messages.escalate
    action_failed: NonEmpty = Messages.action_failed
    talk_to_person_button: NonEmpty = Messages.talk_to_person_button


class RedactionFile(_Strict):
    order_number: NonEmpty | None = None
    keep: list[NonEmpty] = []
    phone_region: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")] = "US"


class FrustrationFile(_Strict):
    rephrase_similarity: Probability = Frustration.rephrase_similarity
    rephrase_turns: Annotated[int, Field(ge=0, le=5)] = Frustration.rephrase_turns
    negative_words: list[NonEmpty] = list(DEFAULT_NEGATIVE_WORDS)


class OpeningHoursFile(_Strict):
    timezone: NonEmpty
    weekly: dict[NonEmpty, NonEmpty] = Field(min_length=1)
    closed_dates: list[date] = []


class HandoffMessagesFile(_Strict):
    frustration: NonEmpty = HandoffMessages.frustration
    action_failed: NonEmpty = HandoffMessages.action_failed
    queue: NonEmpty = HandoffMessages.queue
    closed: NonEmpty = HandoffMessages.closed


class HandoffFile(_Strict):
    frustration: FrustrationFile = FrustrationFile()
    opening_hours: OpeningHoursFile | None = None
    average_handle_minutes: Annotated[float, Field(gt=0, le=MINUTES_PER_DAY)] = (
        Handoff.average_handle_minutes
    )
    action_failure: ActionFailurePolicy = Handoff.action_failure
    messages: HandoffMessagesFile = HandoffMessagesFile()


PLACEHOLDERS = {"queue": ("position", "wait"), "closed": ("day", "time", "timezone")}
"""The ``{placeholders}`` each templated hand-over message may use."""


class BotFile(_Strict):
    name: Name
    intents: dict[Name, IntentFile] = Field(min_length=2)
    responses: dict[Name, list[VariantFile | NonEmpty]] = {}
    thresholds: ThresholdsFile = ThresholdsFile()
    actions: ActionsFile = ActionsFile()
    entities: dict[Name, NonEmpty] = {}
    human_intent: Name | None = None
    messages: MessagesFile = MessagesFile()
    redaction: RedactionFile = RedactionFile()
    handoff: HandoffFile = HandoffFile()


def load_bot(folder: Path | str) -> BotDefinition:
    """Load a bot: a folder with ``bot.yml`` (or a Rasa project), or the file itself."""
    path = Path(folder)
    if path.is_dir():
        if not (path / BOT_FILE).is_file():
            from bot.rasa_import import find_rasa_files, import_rasa

            rasa = find_rasa_files(path)
            if rasa is not None:
                return import_rasa(*rasa, name=path.name)
        path = path / BOT_FILE
    elif path.name in {"nlu.yml", "nlu.yaml"}:
        from bot.rasa_import import import_rasa

        domain = path.parent / "domain.yml"
        return import_rasa(path, domain if domain.is_file() else None)
    source = YamlSource.read(path)
    return parse_bot(source)


def parse_bot(source: YamlSource) -> BotDefinition:
    if not isinstance(source.data, dict):
        raise source.error([], "expected a mapping with at least `name` and `intents`")
    try:
        spec = BotFile.model_validate(source.data)
    except ValidationError as exc:
        raise _first_error(source, exc) from exc
    return _to_domain(source, spec)


def _first_error(source: YamlSource, exc: ValidationError) -> DefinitionError:
    # An unknown key usually explains a "field required" next to it: report it first.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    loc = [part for part in err["loc"] if not _is_union_tag(part)]
    field = ".".join(str(p) for p in loc) or "(top level)"
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) else f", got {got!r}"
    message = f"{field}: {err['msg'].rstrip('.')}{shown}"
    if err["type"] == "extra_forbidden":
        message = f"{field}: unknown key (check its spelling and indentation)"
    more = len(exc.errors()) - 1
    if more:
        message += f" (and {more} more error{'s' if more > 1 else ''})"
    return source.error(loc, message)


def _is_union_tag(part: str | int) -> bool:
    # pydantic puts the union member's name in the location ("VariantFile", "str").
    return isinstance(part, str) and (part[:1].isupper() or part in {"str", "constrained-str"})


def _to_domain(source: YamlSource, spec: BotFile) -> BotDefinition:
    responses = {
        name: Response(name=name, variants=tuple(_variant(v) for v in variants))
        for name, variants in spec.responses.items()
    }
    if spec.human_intent is not None and spec.human_intent not in spec.intents:
        raise source.error(
            ["human_intent"], f"human_intent: no intent named {spec.human_intent!r} in `intents`"
        )
    intents: list[Intent] = []
    for name, item in spec.intents.items():
        if item.response is not None and item.response not in responses:
            raise source.error(
                ["intents", name, "response"],
                f"intents.{name}.response: no response named {item.response!r} in `responses`",
            )
        answers = item.action or item.response or f"utter_{name}" in responses
        hands_over = item.escalate or spec.human_intent == name
        if not answers and not hands_over:
            raise source.error(
                ["intents", name],
                f"intents.{name}: expected an `action`, a `response`, or a response "
                f"named 'utter_{name}' in `responses`",
            )
        intents.append(
            Intent(
                name=name,
                examples=tuple(item.examples),
                response=item.response,
                action=item.action,
                escalate=item.escalate,
                title=item.title,
            )
        )
    uses_actions = any(i.action for i in intents)
    if uses_actions and spec.actions.module is None and spec.actions.url is None:
        raise source.error(
            ["actions"],
            "actions: an intent names a custom action, so expected `actions.module` "
            "(a Python module in the bot folder) or `actions.url` (an action server)",
        )
    for name, pattern in spec.entities.items():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise source.error(
                ["entities", name], f"entities.{name}: not a valid regular expression: {exc}"
            ) from exc
    if spec.redaction.order_number is not None:
        try:
            re.compile(spec.redaction.order_number)
        except re.error as exc:
            raise source.error(
                ["redaction", "order_number"],
                f"redaction.order_number: not a valid regular expression: {exc}",
            ) from exc
    return BotDefinition(
        name=spec.name,
        intents=tuple(intents),
        responses=MappingProxyType(responses),
        thresholds=Thresholds(**spec.thresholds.model_dump()),
        actions=ActionSettings(**spec.actions.model_dump()),
        entities=MappingProxyType(dict(spec.entities)),
        messages=Messages(**spec.messages.model_dump()),
        human_intent=spec.human_intent,
        root=source.path.parent.resolve(),
        redaction=Redaction(
            order_number=spec.redaction.order_number,
            keep=tuple(spec.redaction.keep),
            phone_region=spec.redaction.phone_region.upper(),
        ),
        handoff=_handoff(source, spec.handoff),
    )


def _handoff(source: YamlSource, spec: HandoffFile) -> Handoff:
    for index, phrase in enumerate(spec.frustration.negative_words):
        if not handoff.words(phrase):
            raise source.error(
                ["handoff", "frustration", "negative_words", index],
                f"handoff.frustration.negative_words: {phrase!r} has no words to look for",
            )
    for name, allowed in PLACEHOLDERS.items():
        _check_template(source, name, getattr(spec.messages, name), allowed)
    hours = spec.opening_hours
    return Handoff(
        frustration=Frustration(
            rephrase_similarity=spec.frustration.rephrase_similarity,
            rephrase_turns=spec.frustration.rephrase_turns,
            negative_words=tuple(spec.frustration.negative_words),
        ),
        opening_hours=None if hours is None else _opening_hours(source, hours),
        average_handle_minutes=spec.average_handle_minutes,
        action_failure=spec.action_failure,
        messages=HandoffMessages(**spec.messages.model_dump()),
    )


def _check_template(source: YamlSource, name: str, text: str, allowed: tuple[str, ...]) -> None:
    loc = ["handoff", "messages", name]
    expected = ", ".join(f"{{{a}}}" for a in allowed)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise source.error(
            loc, f"handoff.messages.{name}: {exc} (write {{{{ and }}}} for a literal brace)"
        ) from exc
    for field in fields:
        if field not in allowed:
            raise source.error(
                loc,
                f"handoff.messages.{name}: unknown placeholder {{{field}}}; "
                f"expected some of {expected}",
            )


def _opening_hours(source: YamlSource, spec: OpeningHoursFile) -> OpeningHours:
    where = ["handoff", "opening_hours"]
    try:
        ZoneInfo(spec.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise source.error(
            [*where, "timezone"],
            f"handoff.opening_hours.timezone: unknown time zone {spec.timezone!r}; expected "
            "an IANA name such as 'Europe/Berlin' or 'America/New_York'",
        ) from exc
    weekly: list[tuple[tuple[int, int], ...] | None] = [None] * len(WEEKDAYS)
    for key, value in spec.weekly.items():
        loc = [*where, "weekly", key]
        field = f"handoff.opening_hours.weekly.{key}"
        try:
            days = _days(key)
            slots = _slots(value)
        except ValueError as exc:
            raise source.error(loc, f"{field}: {exc}") from exc
        for day in days:
            if weekly[day] is not None:
                raise source.error(loc, f"{field}: {WEEKDAYS[day]!r} is given twice")
            weekly[day] = slots
    if not any(weekly):
        raise source.error(
            [*where, "weekly"],
            "handoff.opening_hours.weekly: every day is closed; expected opening hours on at "
            'least one day, e.g. `mon-fri: "09:00-18:00"`',
        )
    return OpeningHours(
        timezone=spec.timezone,
        weekly=tuple(slots or () for slots in weekly),
        closed_dates=frozenset(spec.closed_dates),
    )


def _days(key: str) -> list[int]:
    """``"mon-fri"`` -> ``[0, 1, 2, 3, 4]``; ``"sat, sun"`` -> ``[5, 6]``."""
    days: list[int] = []
    for part in key.lower().split(","):
        first, _, last = part.strip().partition("-")
        ends = [first.strip(), (last or first).strip()]
        for end in ends:
            if end not in WEEKDAYS:
                raise ValueError(
                    f"expected days such as 'mon', 'mon-fri' or 'sat, sun', got {key!r}"
                )
        start, stop = WEEKDAYS.index(ends[0]), WEEKDAYS.index(ends[1])
        if stop < start:
            raise ValueError(f"{part.strip()!r} runs backwards; write the earlier day first")
        days.extend(range(start, stop + 1))
    return days


def _slots(value: str) -> tuple[tuple[int, int], ...]:
    """``"09:00-12:00, 13:00-18:00"`` -> ``((540, 720), (780, 1080))``; ``"closed"`` -> ``()``."""
    if value.strip().lower() == "closed":
        return ()
    slots: list[tuple[int, int]] = []
    for part in value.split(","):
        match = re.fullmatch(r"\s*(\d\d:\d\d)\s*-\s*(\d\d:\d\d)\s*", part)
        if match is None:
            raise ValueError(
                f'expected hours such as "09:00-18:00" or "09:00-12:00, 13:00-18:00" '
                f'or "closed", got {value!r}'
            )
        start, end = _minutes(match[1]), _minutes(match[2])
        if end <= start:
            raise ValueError(f"{part.strip()!r} ends before it starts (up to 24:00 a day)")
        slots.append((start, end))
    slots.sort()
    for (_, end), (start, _) in pairwise(slots):
        if start < end:
            raise ValueError(f"the hours in {value!r} overlap")
    return tuple(slots)


def _minutes(hhmm: str) -> int:
    hours, minutes = int(hhmm[:2]), int(hhmm[3:])
    if minutes > 59 or hours * 60 + minutes > MINUTES_PER_DAY:
        raise ValueError(f"expected a time from 00:00 to 24:00, got {hhmm!r}")
    return hours * 60 + minutes


def _variant(item: VariantFile | str) -> ResponseVariant:
    if isinstance(item, str):
        return ResponseVariant(text=item)
    return ResponseVariant(
        text=item.text,
        buttons=tuple(Button(title=b.title, payload=b.payload) for b in item.buttons),
    )
