"""Load and validate a bot folder (``bot.yml``) into a :class:`BotDefinition`.

The file format is described by pydantic models here (it is a wire format, like the
websocket frames); they are converted to the frozen domain dataclasses before anything
else sees them. Every error names the file, the line and what was expected.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from bot.errors import DefinitionError
from bot.types import (
    ActionSettings,
    BotDefinition,
    Button,
    Intent,
    Messages,
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
    retrieval: Probability = Thresholds.retrieval
    out_of_scope: Probability = Thresholds.out_of_scope
    low_confidence_turns: Annotated[int, Field(ge=1)] = Thresholds.low_confidence_turns


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
    )


def _variant(item: VariantFile | str) -> ResponseVariant:
    if isinstance(item, str):
        return ResponseVariant(text=item)
    return ResponseVariant(
        text=item.text,
        buttons=tuple(Button(title=b.title, payload=b.payload) for b in item.buttons),
    )
