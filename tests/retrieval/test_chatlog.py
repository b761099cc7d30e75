"""Chat-log readers (JSONL, STAR, Bitext): malformed records are reported, never dropped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from retrieval.chatlog import (
    ChatLog,
    ChatTurn,
    TurnRole,
    read_bitext,
    read_chatlog_jsonl,
    read_logs,
    read_star,
    write_chatlog_jsonl,
)
from retrieval.errors import ChatLogError
from retrieval.pairs import reply_pairs

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

GOOD = {
    "id": "c1",
    "channel": "web",
    "started_at": "2026-03-02T10:15:00Z",
    "turns": [
        {"role": "customer", "text": "hi", "ts": "2026-03-02T10:15:00Z"},
        {"role": "agent", "text": "hello!", "ts": "2026-03-02T10:15:20+00:00"},
    ],
    "metadata": {"topic": "x"},
}


def with_(**changes: object) -> str:
    return json.dumps({**GOOD, **changes})


@pytest.mark.parametrize(
    ("bad_line", "says"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"id": "x", "turns": []}), "missing required field(s): started_at"),
        (with_(turns=[]), "turns: expected a non-empty list"),
        (
            with_(turns=[{"role": "robot", "text": "hi"}]),
            "turns[0].role: expected one of customer, bot, agent, got 'robot'",
        ),
        (
            with_(turns=[{"role": "customer", "text": "  "}]),
            "turns[0].text: expected non-empty text",
        ),
        (
            with_(started_at="yesterday"),
            "started_at: expected an ISO-8601 timestamp, got 'yesterday'",
        ),
        (with_(id=7), "id: expected a non-empty string"),
        (with_(metadata=[1]), "metadata: expected an object"),
    ],
)
def test_malformed_lines_are_reported_with_line_numbers(
    tmp_path: Path, bad_line: str, says: str
) -> None:
    """A bad line is skipped and reported with its line number; good lines around it are kept."""
    path = tmp_path / "logs.jsonl"
    path.write_text("\n".join([json.dumps(GOOD), "", bad_line, with_(id="c2")]) + "\n")
    result = read_chatlog_jsonl(path)
    assert [log.id for log in result.logs] == ["c1", "c2"]
    assert len(result.problems) == 1
    problem = result.problems[0]
    assert problem.line == 3 and problem.source == str(path)
    assert says in problem.message


def test_fields_defaults_and_timestamps(tmp_path: Path) -> None:
    """channel and metadata default; a trailing Z and naive times become UTC; ts is optional."""
    record = {
        "id": "c",
        "started_at": "2026-03-02T10:15:00",
        "turns": [{"role": "customer", "text": "hi"}],
    }
    path = tmp_path / "l.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps(GOOD) + "\n")
    first, second = read_chatlog_jsonl(path).logs
    assert first.channel == "import" and dict(first.metadata) == {}
    assert first.started_at == datetime(2026, 3, 2, 10, 15, tzinfo=UTC)
    assert first.turns[0].ts is None
    assert second.turns[1] == ChatTurn(
        TurnRole.AGENT, "hello!", datetime(2026, 3, 2, 10, 15, 20, tzinfo=UTC)
    )


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    """What write_chatlog_jsonl writes, read_chatlog_jsonl reads back identically."""
    logs = read_chatlog_jsonl(_write(tmp_path, [GOOD, {**GOOD, "id": "c2"}])).logs
    out = tmp_path / "out.jsonl"
    write_chatlog_jsonl(logs, out)
    assert read_chatlog_jsonl(out).logs == logs


def _write(tmp_path: Path, records: list[dict[str, object]]) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _star(tmp_path: Path) -> Path:
    folder = tmp_path / "star" / "dialogues"
    folder.mkdir(parents=True)
    dialogue = {
        "DialogueID": 12,
        "Scenario": {
            "Domains": ["bank"],
            "Happy": True,
            "WizardCapabilities": [{"Task": "bank_balance"}],
        },
        "Events": [
            {"Action": "instruct", "Agent": "UserGuide", "Text": "act calm"},
            {
                "Action": "utter",
                "Agent": "User",
                "Text": "What's my balance?",
                "UnixTime": 1589375697,
            },
            {"Action": "query", "Agent": "Wizard", "Constraints": []},
            {
                "Action": "pick_suggestion",
                "Agent": "Wizard",
                "Text": "Your name please?",
                "ActionLabel": "bank_ask_name",
                "UnixTime": 1589375711,
            },
            {"Action": "utter", "Agent": "User", "Text": "Ann"},
            {
                "Action": "utter",
                "Agent": "Wizard",
                "Text": "Sorry, I can't help with that.",
                "ActionLabel": "out_of_scope",
            },
        ],
    }
    (folder / "12.json").write_text(json.dumps(dialogue))
    (folder / "3.json").write_text(json.dumps({**dialogue, "DialogueID": 3}))
    (folder / "7.json").write_text("{broken")
    (folder / "9.json").write_text(
        json.dumps({"DialogueID": 9, "Events": [], "CompletionLevel": "EarlyDisconnect"})
    )
    return folder.parent


def test_star_dialogues(tmp_path: Path) -> None:
    """User/wizard utterances become customer/agent turns with action labels; bad files reported."""
    result = read_star(_star(tmp_path))
    assert [log.id for log in result.logs] == ["star-3", "star-12"]  # numeric order
    log = result.logs[1]
    assert [(t.role, t.text) for t in log.turns] == [
        (TurnRole.CUSTOMER, "What's my balance?"),
        (TurnRole.AGENT, "Your name please?"),
        (TurnRole.CUSTOMER, "Ann"),
        (TurnRole.AGENT, "Sorry, I can't help with that."),
    ]
    assert log.metadata["action_labels"] == [None, "bank_ask_name", None, "out_of_scope"]
    assert log.metadata["domains"] == ["bank"] and log.metadata["tasks"] == ["bank_balance"]
    assert log.turns[0].ts == datetime.fromtimestamp(1589375697, UTC)
    messages = sorted((Path(p.source).name, p.message) for p in result.problems)
    assert messages[0][0] == "7.json" and "not valid JSON" in messages[0][1]
    assert messages[1][0] == "9.json" and "EarlyDisconnect" in messages[1][1]


def test_bitext_rows(tmp_path: Path) -> None:
    """Each Bitext row is a request and a response; an empty row is reported by its line."""
    path = tmp_path / "bitext.csv"
    path.write_text(
        "context,role,instruction,intent,entity_type,entity_value,start_offset,end_offset,category,tags,response\n"
        'cs,va,how do I cancel?,cancel_order,,,,,ORDER,B,"Go to Orders.\n\nClick Cancel."\n'
        "cs,va,,cancel_order,,,,,ORDER,B,orphan answer\n"
        "cs,va,where is my refund,refund,,,,,REFUND,B,It takes 5 days.\n"
    )
    result = read_bitext(path)
    assert [log.id for log in result.logs] == ["bitext-1", "bitext-3"]
    assert result.logs[0].turns[1].text == "Go to Orders.\n\nClick Cancel."
    assert result.logs[0].metadata["intent"] == "cancel_order"
    assert [(p.line, p.message) for p in result.problems] == [
        (5, "instruction: expected text, got ''")
    ]


def test_read_logs_dispatches_on_the_path(tmp_path: Path) -> None:
    """read_logs picks the reader from the path; anything else is a clear error."""
    assert len(read_logs(_write(tmp_path, [GOOD])).logs) == 1
    assert len(read_logs(_star(tmp_path)).logs) == 2
    with pytest.raises(ChatLogError, match=r"expected a chat-log \.jsonl file"):
        read_logs(tmp_path / "nothing.txt")


def test_reply_pairs_join_customer_turns_and_skip_bot_answers() -> None:
    """Pairs are (customer turns since the last answer -> agent reply); bot replies not reused."""
    t = [
        ChatTurn(TurnRole.CUSTOMER, "hi"),
        ChatTurn(TurnRole.CUSTOMER, "where is my order"),
        ChatTurn(TurnRole.AGENT, "On its way."),
        ChatTurn(TurnRole.CUSTOMER, "thanks"),
        ChatTurn(TurnRole.BOT, "You're welcome"),
        ChatTurn(TurnRole.AGENT, "Anything else?"),
    ]
    pairs = reply_pairs([ChatLog("c", "web", None, tuple(t))])
    assert [(p.context, p.reply, p.turn) for p in pairs] == [
        ("hi where is my order", "On its way.", 2)
    ]


@pytest.mark.skipif(not (DATA / "star").is_dir(), reason="shared/data/star not present")
def test_real_star_and_bitext() -> None:
    """The real data sets read completely: every STAR file is either a log or a reported problem."""
    star = read_star(DATA / "star")
    assert len(star.logs) + len(star.problems) == 5322
    assert len(star.logs) > 4900
    bitext = read_logs(
        DATA / "bitext-customer-support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
    )
    assert len(bitext.logs) + len(bitext.problems) == 4514
