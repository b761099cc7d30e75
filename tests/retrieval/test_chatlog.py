"""Chat-log readers (JSONL, STAR, Bitext): malformed records are reported, never dropped."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from retrieval.bitext import read_bitext
from retrieval.chatlog import (
    ChatLog,
    ChatTurn,
    ReadProblem,
    ReadResult,
    TurnRole,
    read_chatlog_jsonl,
    read_logs,
    write_chatlog_jsonl,
)
from retrieval.errors import ChatLogError, RetrievalError
from retrieval.star import read_star

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"  # the shared data sets, when this checkout has them

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


def line(**changes: object) -> str:
    """GOOD as a JSONL line, with some fields replaced (a value of ... removes the field)."""
    return json.dumps({k: v for k, v in {**GOOD, **changes}.items() if v is not ...})


def turn(**fields: object) -> str:
    """GOOD with a single turn made of these fields."""
    return line(turns=[fields])


# --- JSONL ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            "{not json",
            "not valid JSON: Expecting property name enclosed in double quotes (column 2)",
        ),
        ("[1, 2]", "expected a JSON object, got list"),
        ('"a string"', "expected a JSON object, got str"),
        (line(started_at=..., turns=...), "missing required field(s): started_at, turns"),
        (line(id=7), "id: expected a non-empty string, got 7"),
        (line(id=""), "id: expected a non-empty string, got ''"),
        (line(channel=None), "channel: expected a non-empty string, got None"),
        (line(turns="hi"), "turns: expected a list, got 'hi'"),
        (line(turns=["hi"]), "turns[0]: expected an object, got 'hi'"),
        (
            turn(role="robot", text="hi"),
            "turns[0].role: expected one of customer, bot, agent, system, got 'robot'",
        ),
        (
            turn(role="System", text="You are number 2 in the queue."),  # roles are lower case
            "turns[0].role: expected one of customer, bot, agent, system, got 'System'",
        ),
        (turn(text="hi"), "turns[0].role: expected one of customer, bot, agent, system, got None"),
        (turn(role="customer", text="  "), "turns[0].text: expected a non-empty string, got '  '"),
        (turn(role="customer"), "turns[0].text: expected a non-empty string, got None"),
        (
            line(started_at="yesterday"),
            "started_at: expected an ISO-8601 timestamp, got 'yesterday'",
        ),
        (
            line(started_at=1767225600),
            "started_at: expected an ISO-8601 timestamp string, got 1767225600",
        ),
        (
            turn(role="bot", text="hi", ts="10:61"),
            "turns[0].ts: expected an ISO-8601 timestamp, got '10:61'",
        ),
        (line(metadata=[1]), "metadata: expected an object, got [1]"),
        (
            line(metdata={}),
            "unknown field(s) 'metdata': expected only id, channel, started_at, turns, metadata "
            "(put anything else in metadata)",
        ),
        (
            turn(role="bot", text="hi", sender="x"),
            "turns[0]: unknown field(s) 'sender': expected only role, text, ts, model "
            "(put anything else in metadata)",
        ),
        (
            turn(role="bot", text="hi", model=3),
            "turns[0].model: expected a version name or null, got 3",
        ),
        (line(), "id: 'c1' already used on line 1"),
    ],
)
def test_malformed_jsonl_line_is_reported_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bad: str, message: str
) -> None:
    """A bad line is skipped and reported (and logged) with its line; the good lines are kept."""
    path = tmp_path / "logs.jsonl"
    path.write_text("\n".join([line(), "", bad, line(id="c2")]) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="retrieval.chatlog"):
        result = read_chatlog_jsonl(path)
    assert [chat.id for chat in result.logs] == ["c1", "c2"]
    assert result.problems == (ReadProblem(str(path), 3, message),)
    assert caplog.messages == [f"skipped {path}:3: {message}"]


def test_every_bad_line_gets_its_own_problem(tmp_path: Path) -> None:
    """Several bad lines (bad bytes included) each get a problem with their own line number."""
    path = tmp_path / "logs.jsonl"
    lines: list[str | bytes] = [
        line(),
        b"\xff\xfe{}",
        "oops",
        "",
        "   ",
        line(id="c2"),
        "[]",
        line(id="c3"),
    ]
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines))
    result = read_chatlog_jsonl(path)
    assert [chat.id for chat in result.logs] == ["c1", "c2", "c3"]
    assert [(p.line, p.message.split(":")[0]) for p in result.problems] == [
        (2, "not valid UTF-8"),
        (3, "not valid JSON"),
        (7, "expected a JSON object, got list"),
    ]


def test_defaults_optional_fields_and_timestamps(tmp_path: Path) -> None:
    """channel and metadata default; Z and naive times are UTC; ts and started_at may be null."""
    records = [
        {"id": "a", "started_at": "2026-03-02T10:15:00", "turns": [{"role": "bot", "text": "hi"}]},
        {"id": "b", "started_at": None, "turns": [], "channel": "email"},
    ]
    path = tmp_path / "logs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [*records, GOOD]), encoding="utf-8")
    first, second, third = read_chatlog_jsonl(path).logs
    assert first == ChatLog(
        "a", "import", datetime(2026, 3, 2, 10, 15, tzinfo=UTC), (ChatTurn(TurnRole.BOT, "hi"),)
    )
    assert dict(first.metadata) == {}
    assert (second.started_at, second.turns, second.channel) == (None, (), "email")
    assert third.turns[1] == ChatTurn(
        TurnRole.AGENT, "hello!", datetime(2026, 3, 2, 10, 15, 20, tzinfo=UTC)
    )
    assert third.metadata == {"topic": "x"}


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    """What write_chatlog_jsonl writes, read_chatlog_jsonl reads back equal, unknown times too."""
    when = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    logs = (
        ChatLog(
            "w1",
            "web",
            when,
            (
                ChatTurn(TurnRole.CUSTOMER, "Grüße, où est ma commande ?", when),
                ChatTurn(TurnRole.AGENT, "x"),
            ),
            {"labels": [None, "greet"], "nested": {"n": 1}},
        ),
        ChatLog("w2", "bitext", None, (ChatTurn(TurnRole.BOT, "line\nbreak"),)),
        ChatLog("w3", "star", None, ()),
    )
    path = tmp_path / "out.jsonl"
    write_chatlog_jsonl(iter(logs), path)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3
    assert read_chatlog_jsonl(path) == ReadResult(logs, ())
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_system_turns_read_and_round_trip(tmp_path: Path) -> None:
    """The platform's notices (hand-over, queue, "the team is back") are `system` turns: read
    as such, written back the same, never taken for the customer or the bot."""
    notices = [
        {"role": "customer", "text": "do you sell lamp shades?", "ts": "2026-03-02T10:15:00Z"},
        {"role": "system", "text": "I'll pass you to one of my colleagues.", "ts": None},
        {"role": "system", "text": "You are number 2 in the queue.", "ts": None},
        {"role": "agent", "text": "Yes, in three sizes.", "ts": "2026-03-02T10:19:00Z"},
    ]
    path = tmp_path / "logs.jsonl"
    path.write_text(line(turns=notices) + "\n", encoding="utf-8")
    result = read_chatlog_jsonl(path)
    assert result.problems == ()
    (chat,) = result.logs
    assert [t.role for t in chat.turns] == [
        TurnRole.CUSTOMER, TurnRole.SYSTEM, TurnRole.SYSTEM, TurnRole.AGENT,
    ]  # fmt: skip
    assert ChatTurn("system", "x").role is TurnRole.SYSTEM  # type: ignore[arg-type]
    again = tmp_path / "again.jsonl"
    write_chatlog_jsonl(result.logs, again)
    assert json.loads(again.read_text(encoding="utf-8"))["turns"][1] == notices[1]
    assert read_chatlog_jsonl(again) == result
    assert read_logs(again) == result


def test_write_refuses_metadata_that_is_not_json(tmp_path: Path) -> None:
    """A metadata value JSON cannot hold is an error naming the conversation; no file is left."""
    path = tmp_path / "out.jsonl"
    chat = ChatLog("odd", "web", None, (), {"when": datetime(2026, 1, 1)})
    with pytest.raises(ChatLogError, match="cannot write conversation 'odd'"):
        write_chatlog_jsonl([chat], path)
    assert list(tmp_path.iterdir()) == []


def test_values_are_frozen_and_roles_checked() -> None:
    """A ChatLog copies its metadata read-only; a turn's role is always a TurnRole."""
    metadata: dict[str, object] = {"a": 1}
    chat = ChatLog("c", "web", None, (), metadata)
    metadata["a"] = 2
    assert chat.metadata["a"] == 1
    with pytest.raises(TypeError):
        chat.metadata["a"] = 3  # type: ignore[index]
    assert ChatTurn("customer", "hi").role is TurnRole.CUSTOMER  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match="expected one of customer, bot, agent, system, got 'robot'"
    ):
        ChatTurn("robot", "hi")  # type: ignore[arg-type]


# --- STAR -------------------------------------------------------------------------------------

STAR_DIALOGUE = {
    "DialogueID": 12,
    "CompletionLevel": "Complete",
    "Scenario": {
        "Domains": ["bank"],
        "Happy": True,
        "MultiTask": False,
        "UserTask": "Find out your balance.",
        "WizardCapabilities": [{"Domain": "bank", "SchemaImage": "b.jpg", "Task": "bank_balance"}],
        "WizardTask": "Tell the user their balance.",
    },
    "Events": [
        {"Action": "instruct", "Agent": "UserGuide", "Text": "act calm", "UnixTime": 1589375664},
        {"Action": "utter", "Agent": "User", "Text": "What's my balance? ", "UnixTime": 1589375697},
        {
            "Action": "request_suggestions",
            "Agent": "Wizard",
            "Text": "name?",
            "UnixTime": 1589375711,
        },
        {
            "Action": "pick_suggestion",
            "ActionLabel": "bank_ask_name",
            "ActionLabelOptions": ["bank_ask_name", "goodbye_1"],
            "Agent": "Wizard",
            "Text": "Could I get your name, please?",
            "UnixTime": 1589375714,
        },
        {"Action": "utter", "Agent": "User", "Text": "Ann"},
        {"APIName": "bank_balance", "Action": "query", "Agent": "Wizard", "Constraints": []},
        {"Action": "return_item", "Agent": "KnowledgeBase", "Item": {}, "TotalItems": 1},
        {"Action": "utter", "Agent": "Wizard", "Text": "It is 12 dollars.", "UnixTime": 1589375790},
        {
            "Action": "pick_suggestion",
            "ActionLabel": "out_of_scope",
            "Agent": "Wizard",
            "Text": "Sorry, I can't help with that.",
        },
        {"Action": "complete", "Agent": "User", "UnixTime": 1589375800},
    ],
}


def make_star(root: Path) -> Path:
    """A STAR-shaped root: two dialogues, one abandoned early, and three broken files."""
    folder = root / "star" / "dialogues"
    folder.mkdir(parents=True)
    files = {
        "12.json": json.dumps(STAR_DIALOGUE),
        "3.json": json.dumps({**STAR_DIALOGUE, "DialogueID": 3}),
        "7.json": "{broken",
        "9.json": json.dumps({"DialogueID": 9, "Scenario": {}}),
        "10.json": json.dumps(
            {"DialogueID": 10, "CompletionLevel": "EarlyDisconnectDuringDialogue", "Events": []}
        ),
        "11.json": json.dumps({"DialogueID": "11", "Events": []}),
    }
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder.parent


def test_star_dialogues_map_to_customer_and_agent_turns(tmp_path: Path) -> None:
    """Utterances become turns in DialogueID order, with times, action labels and scenario."""
    result = read_star(make_star(tmp_path))
    assert [chat.id for chat in result.logs] == ["star-3", "star-10", "star-12"]
    chat = result.logs[2]
    assert chat.channel == "star"
    assert [(t.role, t.text) for t in chat.turns] == [
        (TurnRole.CUSTOMER, "What's my balance?"),
        (TurnRole.AGENT, "Could I get your name, please?"),
        (TurnRole.CUSTOMER, "Ann"),
        (TurnRole.AGENT, "It is 12 dollars."),
        (TurnRole.AGENT, "Sorry, I can't help with that."),
    ]
    assert [t.ts for t in chat.turns][:3] == [
        datetime.fromtimestamp(1589375697, UTC),
        datetime.fromtimestamp(1589375714, UTC),
        None,
    ]
    assert chat.started_at == datetime.fromtimestamp(1589375664, UTC)
    assert dict(chat.metadata) == {
        "dialogue_id": 12,
        "domains": ["bank"],
        "tasks": ["bank_balance"],
        "happy": True,
        "multi_task": False,
        "completion_level": "Complete",
        "action_labels": [None, "bank_ask_name", None, None, "out_of_scope"],
    }


def test_star_problems_and_abandoned_dialogues(tmp_path: Path) -> None:
    """Broken files are whole-file problems; a dialogue where nobody spoke is kept, empty."""
    result = read_star(make_star(tmp_path))
    assert result.logs[1].turns == ()
    assert result.logs[1].metadata["completion_level"] == "EarlyDisconnectDuringDialogue"
    assert [(Path(p.source).name, p.line, p.message[:40]) for p in result.problems] == [
        ("7.json", None, "not valid JSON: Expecting property name "),
        ("9.json", None, "Events: expected a list of events, got N"),
        ("11.json", None, "DialogueID: expected an integer, got '11"),
    ]


@pytest.mark.parametrize("where", ["star", "star/dialogues", "star/dialogues/12.json"])
def test_star_accepts_root_folder_or_file(tmp_path: Path, where: str) -> None:
    """read_star takes the STAR root, its dialogues/ folder, or a single dialogue file."""
    make_star(tmp_path)
    assert read_star(tmp_path / where).logs[-1].id == "star-12"


def test_star_without_dialogues_is_an_error(tmp_path: Path) -> None:
    """A folder with no dialogue files is not silently an empty data set."""
    with pytest.raises(ChatLogError, match=r"no STAR dialogues in .*: expected \*\.json"):
        read_star(tmp_path)


# --- Bitext -----------------------------------------------------------------------------------

BITEXT_HEADER = (
    "context,role,instruction,intent,entity_type,entity_value,start_offset,end_offset,"
    "category,tags,response\n"
)
BITEXT_ROWS = [
    'cs,va,how do I cancel order 0042?,cancel_order,order_id,42,20,24,ORDER,BIL,"Go to Orders.\n\n'
    'Click {{Cancel Order}}."\n',  # lines 2-4
    "cs,va,,cancel_order,,,,,ORDER,B,an answer to nothing\n",  # line 5
    "\n",  # line 6: blank
    "cs,va,where is my refund,refund,,,,,REFUND,B,\n",  # line 7
    "cs,va,too few fields,refund\n",  # line 8
    "cs,va,refund order 7 for Ann,get_refund,order_id,7,13,14,REFUND,BL,Done.\n",  # line 9
    "cs,va,refund order 7 for Ann,get_refund,person_name,Ann,19,22,REFUND,BL,Done.\n",  # line 10
    "cs,va,order 9,track_order,order_id,9,six,7,ORDER,B,On its way.\n",  # line 11
    "cs,va,hi,greeting,,,,,OTHER,B,Hello!\n",  # line 12
]


def test_bitext_requests_become_two_turn_conversations(tmp_path: Path) -> None:
    """Each request is a customer and an agent turn; rows repeating it add entities."""
    path = tmp_path / "bitext.csv"
    path.write_text(BITEXT_HEADER + "".join(BITEXT_ROWS), encoding="utf-8")
    result = read_bitext(path)
    assert [chat.id for chat in result.logs] == ["bitext-1", "bitext-5", "bitext-8"]
    first, refund, hello = result.logs
    assert first.turns == (
        ChatTurn(TurnRole.CUSTOMER, "how do I cancel order 0042?"),
        ChatTurn(TurnRole.AGENT, "Go to Orders.\n\nClick {{Cancel Order}}."),
    )
    assert (first.channel, first.started_at) == ("bitext", None)
    assert dict(first.metadata) == {
        "intent": "cancel_order",
        "category": "ORDER",
        "tags": "BIL",
        "entities": [{"type": "order_id", "value": "42", "start": 20, "end": 24}],
    }
    assert [e["type"] for e in refund.metadata["entities"]] == ["order_id", "person_name"]  # type: ignore[attr-defined]
    assert hello.metadata["entities"] == []


def test_bitext_bad_rows_are_reported_by_csv_line(tmp_path: Path) -> None:
    """Rows lacking text or fields are reported with the physical line where they start."""
    path = tmp_path / "bitext.csv"
    path.write_text(BITEXT_HEADER + "".join(BITEXT_ROWS), encoding="utf-8")
    assert [(p.line, p.message) for p in read_bitext(path).problems] == [
        (5, "instruction: expected text, got ''"),
        (7, "response: expected text, got ''"),
        (8, "expected 11 fields, got 4"),
        (11, "start_offset: expected a character offset (an integer), got 'six'"),
    ]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("", "got an empty file"),
        ("text,category\nhello,greeting\n", "header has the columns instruction, response"),
    ],
)
def test_bitext_without_its_columns_is_an_error(tmp_path: Path, content: str, error: str) -> None:
    """A CSV that is not Bitext's cannot be read row by row: the whole file is refused."""
    path = tmp_path / "other.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ChatLogError, match=error):
        read_bitext(path)


# --- dispatch ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "channel"),
    [("logs.jsonl", "web"), ("bitext.csv", "bitext"), ("star", "star"), ("star/dialogues", "star")],
)
def test_read_logs_picks_the_reader_from_the_path(tmp_path: Path, where: str, channel: str) -> None:
    """A .jsonl file is chat-log JSONL, a .csv file Bitext, a folder of dialogues STAR."""
    (tmp_path / "logs.jsonl").write_text(line() + "\n", encoding="utf-8")
    (tmp_path / "bitext.csv").write_text(BITEXT_HEADER + BITEXT_ROWS[-1], encoding="utf-8")
    make_star(tmp_path)
    assert read_logs(tmp_path / where).logs[0].channel == channel


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("notes.txt", "is none of these"),
        ("missing.jsonl", "does not exist"),
        ("one.json", "is none of these"),
        ("empty", "is none of these"),
    ],
)
def test_read_logs_refuses_other_paths(tmp_path: Path, name: str, state: str) -> None:
    """Any other path is a ChatLogError (a RetrievalError) listing the accepted kinds."""
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    (tmp_path / "one.json").write_text("{}", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RetrievalError) as caught:
        read_logs(tmp_path / name)
    assert isinstance(caught.value, ChatLogError)
    assert state in str(caught.value)
    assert "expected a Frontdesk chat-log .jsonl file, a Bitext customer-support .csv" in str(
        caught.value
    )


def test_chatlog_imports_without_heavy_dependencies() -> None:
    """retrieval.chatlog needs only the standard library: no torch, faiss or numpy."""
    block = "".join(
        f"sys.modules[{name!r}] = None\n" for name in ("torch", "faiss", "numpy", "transformers")
    )
    code = f"import sys\n{block}import retrieval.chatlog\nprint('ok')\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr


# --- the real data sets, when present -----------------------------------------------------------

BITEXT_CSV = (
    DATA / "bitext-customer-support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param(
            DATA / "star",
            5322,
            marks=pytest.mark.skipif(
                not (DATA / "star" / "dialogues").is_dir(), reason="shared/data/star not present"
            ),
            id="star",
        ),
        pytest.param(
            BITEXT_CSV,
            4514,
            marks=pytest.mark.skipif(
                not BITEXT_CSV.is_file(), reason="shared/data/bitext-customer-support not present"
            ),
            id="bitext",
        ),
    ],
)
def test_real_data_sets_read_completely(path: Path, expected: int) -> None:
    """Every real STAR dialogue and Bitext request becomes a conversation with unique ids."""
    result = read_logs(path)
    assert len(result.logs) + len(result.problems) == expected
    assert len(result.problems) <= 5
    assert len({chat.id for chat in result.logs}) == len(result.logs)
    assert sum(len(chat.turns) for chat in result.logs) > expected  # conversations, not stubs
