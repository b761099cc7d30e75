"""Rasa nlu.yml / domain.yml import into the same BotDefinition."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.definition import load_bot
from bot.errors import DefinitionError
from bot.rasa_import import strip_annotations
from bot.types import Button

NLU = """\
version: "3.1"
nlu:
- intent: greet
  examples: |
    - hey
    - hello there
- intent: check_order
  examples: |
    - where is order [1042](order_number)
    - status of [2001]{"entity": "order_number"} please
- intent: human_handoff
  examples: |
    - let me talk to a human
- synonym: savings
  examples: |
    - pink pig
- regex: order_number
  examples: |
    - \\d{4}
"""

DOMAIN = """\
version: "3.1"
intents: [greet, check_order, human_handoff]
responses:
  utter_greet:
  - text: "Hey! How can I help?"
    buttons:
    - title: "Where is my order?"
      payload: "/check_order"
  - image: "https://example.invalid/x.png"
  utter_human_handoff:
  - text: "Getting a colleague."
"""


def test_imports_intents_examples_and_responses(tmp_path: Path) -> None:
    """A Rasa folder loads like a bot folder; annotations and /intent payloads are mapped."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "nlu.yml").write_text(NLU)
    (tmp_path / "domain.yml").write_text(DOMAIN)
    bot = load_bot(tmp_path)
    assert [i.name for i in bot.intents] == ["greet", "check_order", "human_handoff"]
    assert bot.intent("check_order").examples == (
        "where is order 1042",
        "status of 2001 please",
    )
    greet = bot.response_for(bot.intent("greet"))
    assert greet is not None and len(greet.variants) == 1  # the image variant is skipped
    assert greet.variants[0].buttons == (Button("Where is my order?", "where is order 1042"),)
    assert bot.human_intent == "human_handoff"


def test_nlu_file_path_is_accepted(tmp_path: Path) -> None:
    """The nlu.yml path itself can be given; domain.yml beside it is used when present."""
    (tmp_path / "nlu.yml").write_text(NLU)
    bot = load_bot(tmp_path / "nlu.yml")
    assert len(bot.intents) == 3 and dict(bot.responses) == {}


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("nlu:\n- intent: greet\n  examples: 3\n", 3, "expected a block of `- example` lines"),
        (
            "nlu:\n- intent: greet\n  examples: |\n    hello\n",
            3,
            "expected lines starting with '- '",
        ),
        ("intents: [a]\n", 1, "expected a mapping with an `nlu:` list"),
    ],
)
def test_bad_nlu_names_the_line(tmp_path: Path, text: str, line: int, says: str) -> None:
    """Malformed Rasa files give errors with the file and line."""
    (tmp_path / "nlu.yml").write_text(text)
    with pytest.raises(DefinitionError) as err:
        load_bot(tmp_path / "nlu.yml")
    assert says in str(err.value) and err.value.line == line


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("where is [1042](order_number)", "where is 1042"),
        ('[Berlin]{"entity": "city"} please', "Berlin please"),
        ("no annotation", "no annotation"),
    ],
)
def test_strip_annotations(raw: str, clean: str) -> None:
    """Entity markup is removed, the annotated words are kept."""
    assert strip_annotations(raw) == clean
