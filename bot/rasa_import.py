"""Import a Rasa project's ``nlu.yml`` / ``domain.yml`` (intents, examples, responses).

Stories, rules, forms and slots are not imported: Frontdesk's engine decides by intent,
retrieval and escalation rules instead. Entity annotations in examples
(``[1042](order_number)``, ``[1042]{"entity": "order_number"}``) become plain text.
Button payloads of the form ``/intent`` become that intent's first example, because a
Frontdesk button sends its payload as the customer's message.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType

from bot.errors import DefinitionError
from bot.types import BotDefinition, Button, Intent, Response, ResponseVariant
from bot.yamlsource import YamlSource

_ANNOTATION = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")
_HUMAN_HINTS = ("human", "agent", "person", "handoff")


def strip_annotations(example: str) -> str:
    """``where is [1042](order_number)`` -> ``where is 1042``."""
    return _ANNOTATION.sub(r"\1", example).strip()


def read_nlu(path: Path) -> dict[str, list[str]]:
    """Intent -> examples from a Rasa NLU file (``nlu:`` list with ``intent`` items)."""
    source = YamlSource.read(path)
    data = source.data
    items = data.get("nlu") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise source.error([], "expected a mapping with an `nlu:` list (Rasa 3 NLU format)")
    intents: dict[str, list[str]] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "intent" not in item:
            continue  # synonyms, regexes and lookups are not intents
        name = item["intent"]
        examples = item.get("examples")
        if not isinstance(name, str) or not name:
            raise source.error(["nlu", i, "intent"], f"nlu[{i}].intent: expected a name")
        if not isinstance(examples, str):
            raise source.error(
                ["nlu", i, "examples"],
                f"nlu[{i}].examples: expected a block of `- example` lines, got {examples!r}",
            )
        lines = [ln.strip() for ln in examples.splitlines() if ln.strip()]
        bad = [ln for ln in lines if not ln.startswith("-")]
        if bad:
            raise source.error(
                ["nlu", i, "examples"],
                f"nlu[{i}].examples of {name!r}: expected lines starting with '- ', got {bad[0]!r}",
            )
        cleaned = [strip_annotations(ln[1:]) for ln in lines]
        intents.setdefault(name, []).extend(x for x in cleaned if x)
    if not intents:
        raise source.error(["nlu"], "no `- intent:` items with examples found")
    return intents


def read_domain(path: Path) -> dict[str, list[ResponseVariant]]:
    """Response name -> variants from a Rasa domain file."""
    source = YamlSource.read(path)
    data = source.data
    if not isinstance(data, dict):
        raise source.error([], "expected a mapping (Rasa domain format)")
    responses = data.get("responses") or {}
    if not isinstance(responses, dict):
        raise source.error(["responses"], "responses: expected a mapping of response names")
    out: dict[str, list[ResponseVariant]] = {}
    for name, variants in responses.items():
        if not isinstance(variants, list):
            raise source.error(["responses", name], f"responses.{name}: expected a list")
        for j, variant in enumerate(variants):
            if not isinstance(variant, dict) or not isinstance(variant.get("text"), str):
                continue  # images, custom payloads: nothing a text channel can show
            buttons = []
            for k, b in enumerate(variant.get("buttons") or []):
                if not isinstance(b, dict) or "title" not in b or "payload" not in b:
                    raise source.error(
                        ["responses", name, j, "buttons", k],
                        f"responses.{name}[{j}].buttons[{k}]: expected `title` and `payload`",
                    )
                buttons.append(Button(str(b["title"]), str(b["payload"])))
            out.setdefault(str(name), []).append(ResponseVariant(variant["text"], tuple(buttons)))
    return out


def import_rasa(nlu: Path, domain: Path | None = None, name: str = "rasa-import") -> BotDefinition:
    """Build a :class:`BotDefinition` from Rasa files."""
    examples = read_nlu(nlu)
    variants = read_domain(domain) if domain is not None else {}
    firsts = {intent: exs[0] for intent, exs in examples.items()}

    def payload(text: str) -> str:
        return firsts.get(text[1:].split("{")[0], text) if text.startswith("/") else text

    responses = {
        rname: Response(
            rname,
            tuple(
                ResponseVariant(
                    v.text, tuple(Button(b.title, payload(b.payload)) for b in v.buttons)
                )
                for v in vs
            ),
        )
        for rname, vs in variants.items()
    }
    human = next((i for i in examples if any(h in i.lower() for h in _HUMAN_HINTS)), None)
    intents = tuple(Intent(n, tuple(exs)) for n, exs in examples.items())
    if len(intents) < 2:
        raise DefinitionError(nlu, None, f"expected at least 2 intents, got {len(intents)}")
    return BotDefinition(
        name=name,
        intents=intents,
        responses=MappingProxyType(responses),
        human_intent=human,
        root=nlu.parent.resolve(),
    )


def find_rasa_files(folder: Path) -> tuple[Path, Path | None] | None:
    """``(nlu, domain)`` of a Rasa project folder, if it looks like one."""
    for nlu in (folder / "nlu.yml", folder / "data" / "nlu.yml"):
        if nlu.is_file():
            domain = folder / "domain.yml"
            return nlu, domain if domain.is_file() else None
    return None
