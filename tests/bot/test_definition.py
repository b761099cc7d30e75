"""bot.yml loading: a valid file becomes a BotDefinition; errors name file and line."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from bot.definition import load_bot
from bot.errors import DefinitionError
from bot.types import ActionFailurePolicy, Button, Frustration, Handoff, OpeningHours

VALID = """\
name: shop
thresholds:
  intent: 0.6
  low_confidence_turns: 3
actions:
  module: actions
entities:
  order_number: '\\b(\\d{4})\\b'
human_intent: human
intents:
  greet:
    examples: [hi, hello]
  order_status:
    action: action_order_status
    examples:
      - where is my order
  human:
    examples: [a person please]
  legal:
    escalate: true
    examples: [I will sue]
responses:
  utter_greet:
    - text: Hi!
      buttons:
        - title: Track
          payload: where is my order
    - Hello!
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "bot.yml").write_text(text, encoding="utf-8")
    return tmp_path


def test_loads_a_valid_definition(tmp_path: Path) -> None:
    """Every section of bot.yml lands in the typed definition."""
    bot = load_bot(write(tmp_path, VALID))
    assert bot.name == "shop"
    assert [i.name for i in bot.intents] == ["greet", "order_status", "human", "legal"]
    assert bot.intent("order_status").action == "action_order_status"
    assert bot.intent("legal").escalate is True
    assert bot.thresholds.intent == 0.6 and bot.thresholds.low_confidence_turns == 3
    assert bot.thresholds.out_of_scope == 0.5  # default kept
    greet = bot.response_for(bot.intent("greet"))
    assert greet is not None
    assert greet.variants[0].buttons == (Button("Track", "where is my order"),)
    assert greet.variants[1].text == "Hello!"
    assert bot.entities["order_number"] == r"\b(\d{4})\b"
    assert bot.root == tmp_path.resolve()


@pytest.mark.parametrize(
    ("replace", "by", "line", "says"),
    [
        (
            "  intent: 0.6",
            "  intent: 1.6",
            3,
            "thresholds.intent: Input should be less than or equal to 1",
        ),
        (
            "  greet:\n    examples: [hi, hello]",
            "  greet:\n    exampels: [hi]",
            12,
            "intents.greet.exampels: unknown key",
        ),
        ("    examples: [a person please]", "    examples: []", 18, "intents.human.examples"),
        ("human_intent: human", "human_intent: nobody", 9, "no intent named 'nobody'"),
        ("  module: actions", "  module: null", 6, "expected `actions.module`"),
        ("'\\b(\\d{4})\\b'", "'(unclosed'", 8, "not a valid regular expression"),
        (
            "  greet:\n    examples: [hi, hello]",
            "  greet:\n    examples: [hi, hello]\n    response: utter_nope",
            13,
            "no response named 'utter_nope'",
        ),
        ("name: shop", "name: [shop", 2, "not valid YAML"),
        ("  legal:\n    escalate: true\n", "  legal:\n", 20, "expected an `action`, a `response`"),
    ],
)
def test_errors_name_file_and_line(
    tmp_path: Path, replace: str, by: str, line: int, says: str
) -> None:
    """A malformed bot.yml raises an error with the file, the line and what was expected."""
    assert replace in VALID
    write(tmp_path, VALID.replace(replace, by))
    with pytest.raises(DefinitionError) as err:
        load_bot(tmp_path)
    assert err.value.path == tmp_path / "bot.yml"
    assert says in str(err.value)
    assert err.value.line == line, str(err.value)
    assert str(err.value).startswith(f"{tmp_path / 'bot.yml'}:{line}: ")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A folder without bot.yml (nor Rasa files) says the file cannot be read."""
    with pytest.raises(DefinitionError, match="cannot read the file"):
        load_bot(tmp_path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    """A list at the top level is refused with line 1."""
    write(tmp_path, "- a\n- b\n")
    with pytest.raises(DefinitionError) as err:
        load_bot(tmp_path)
    assert err.value.line == 1


def test_redaction_settings_are_read_and_checked(tmp_path: Path) -> None:
    """`redaction:` names the shop's order-number pattern and its own contact details."""
    extra = (
        "redaction:\n  order_number: 'NW-\\d{6}'\n  keep: [help@shop.example]\n  phone_region: gb\n"
    )
    write(tmp_path, VALID + extra)
    bot = load_bot(tmp_path)
    assert bot.redaction.order_number == r"NW-\d{6}"
    assert bot.redaction.keep == ("help@shop.example",)
    assert bot.redaction.phone_region == "GB"
    write(tmp_path, VALID + extra.replace("NW-\\d{6}", "NW-("))
    with pytest.raises(DefinitionError, match=r"redaction\.order_number: not a valid regular"):
        load_bot(tmp_path)
    write(tmp_path, VALID + extra.replace("gb", "Britain"))
    with pytest.raises(DefinitionError, match=r"redaction\.phone_region"):
        load_bot(tmp_path)


HANDOFF = """\
handoff:
  frustration:
    rephrase_similarity: 0.8
    rephrase_turns: 3
    negative_words: [rubbish, "not good enough"]
  opening_hours:
    timezone: America/New_York
    weekly:
      mon-thu: "08:00-12:00, 13:00-17:00"
      fri: "08:00-15:00"
      sat, sun: closed
    closed_dates: [2026-11-26]
  average_handle_minutes: 4.5
  action_failure: escalate
  messages:
    queue: "Place {position}, about {wait}."
    closed: "Back {day} at {time} ({timezone})."
"""


def test_handoff_settings_are_read(tmp_path: Path) -> None:
    """`handoff:` sets the frustration triggers, opening hours, wait estimate and messages."""
    bot = load_bot(write(tmp_path, VALID + HANDOFF))
    policy = bot.handoff
    assert policy.frustration == Frustration(0.8, 3, ("rubbish", "not good enough"))
    assert policy.opening_hours == OpeningHours(
        timezone="America/New_York",
        weekly=(((480, 720), (780, 1020)),) * 4 + (((480, 900),), (), ()),
        closed_dates=frozenset({date(2026, 11, 26)}),
    )
    assert policy.average_handle_minutes == 4.5
    assert policy.action_failure is ActionFailurePolicy.ESCALATE
    assert (policy.messages.queue, policy.messages.closed) == (
        "Place {position}, about {wait}.",
        "Back {day} at {time} ({timezone}).",
    )
    assert policy.messages.frustration == Handoff().messages.frustration  # default kept


def test_handoff_defaults(tmp_path: Path) -> None:
    """Without `handoff:`, the team is always reachable and the English defaults apply."""
    assert load_bot(write(tmp_path, VALID)).handoff == Handoff()


@pytest.mark.parametrize(
    ("replace", "by", "says"),
    [
        ("America/New_York", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("mon-thu:", "mon-thurs:", "expected days such as 'mon', 'mon-fri'"),
        ("mon-thu:", "thu-mon:", "'thu-mon' runs backwards"),
        ("fri:", "thu:", "'thu' is given twice"),
        ('fri: "08:00-15:00"', 'fri: "8-15"', 'expected hours such as "09:00-18:00"'),
        ('fri: "08:00-15:00"', 'fri: "15:00-08:00"', "ends before it starts"),
        ('fri: "08:00-15:00"', 'fri: "08:00-25:00"', "expected a time from 00:00 to 24:00"),
        ("08:00-12:00, 13:00-17:00", "08:00-13:30, 13:00-17:00", "overlap"),
        (
            'mon-thu: "08:00-12:00, 13:00-17:00"\n      fri: "08:00-15:00"',
            "mon-fri: closed",
            "every day is closed",
        ),
        ("{position}", "{place}", "unknown placeholder {place}; expected some of {position}"),
        ("({timezone})", "({zone.name})", "unknown placeholder {zone.name}"),
        ("Back {day}", "Back {day", "handoff.messages.closed"),
        ("rephrase_similarity: 0.8", "rephrase_similarity: 1.8", "rephrase_similarity"),
        ("rephrase_turns: 3", "rephrase_turns: -1", "rephrase_turns"),
        ("[rubbish,", '["!!!",', "'!!!' has no words to look for"),
        ("action_failure: escalate", "action_failure: shrug", "action_failure"),
        ("average_handle_minutes: 4.5", "average_handle_minutes: 0", "average_handle_minutes"),
    ],
)
def test_handoff_errors(tmp_path: Path, replace: str, by: str, says: str) -> None:
    """A mistake in `handoff:` is reported with the file, a line inside the block and the
    expected form."""
    assert replace in HANDOFF
    write(tmp_path, VALID + HANDOFF.replace(replace, by))
    with pytest.raises(DefinitionError) as err:
        load_bot(tmp_path)
    assert says in str(err.value)
    first = VALID.count("\n") + 1
    assert err.value.line is not None and err.value.line >= first, str(err.value)
