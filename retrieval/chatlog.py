"""Past conversations: Frontdesk's JSONL chat-log format and readers for STAR and Bitext.

The format is documented in ``docs/chatlog-format.md``. Readers never drop a record
silently: every record they skip becomes a :class:`ReadProblem` (source, line, what was
expected and what arrived) in the :class:`ReadResult`, and is logged as a warning.
Only a source that cannot be read at all (a missing file, a CSV without the Bitext
columns, a path of an unknown kind) raises :class:`~retrieval.errors.ChatLogError`.

Standard library only: this module is imported by tools that must not load torch or faiss.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

from retrieval.errors import ChatLogError

__all__ = [
    "ChatLog",
    "ChatTurn",
    "ReadProblem",
    "ReadResult",
    "TurnRole",
    "read_bitext",
    "read_chatlog_jsonl",
    "read_logs",
    "read_star",
    "write_chatlog_jsonl",
]

log = logging.getLogger(__name__)


# --- domain values ------------------------------------------------------------------------


class TurnRole(StrEnum):
    """Who wrote a turn: the customer, the bot, or a human agent."""

    CUSTOMER = "customer"
    BOT = "bot"
    AGENT = "agent"


_ROLES = frozenset(role.value for role in TurnRole)
_ROLE_NAMES = ", ".join(role.value for role in TurnRole)


@dataclass(frozen=True)
class ChatTurn:
    """One message of a conversation. ``ts`` is None when the source has no time."""

    role: TurnRole
    text: str
    ts: datetime | None = None

    def __post_init__(self) -> None:
        # Accept the plain string ("agent") too, so that the role is always a TurnRole.
        if not isinstance(self.role, TurnRole):
            try:
                object.__setattr__(self, "role", TurnRole(self.role))
            except ValueError:
                raise ValueError(
                    f"role: expected one of {_ROLE_NAMES}, got {self.role!r}"
                ) from None


@dataclass(frozen=True)
class ChatLog:
    """One past conversation. ``metadata`` is a read-only mapping (JSON values inside)."""

    id: str
    channel: str
    started_at: datetime | None
    turns: tuple[ChatTurn, ...]
    metadata: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        # A copy behind a read-only proxy: the caller's dict cannot change a frozen value.
        object.__setattr__(self, "turns", tuple(self.turns))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))


@dataclass(frozen=True)
class ReadProblem:
    """A record that was skipped: ``line`` is 1-based, None when the whole file is meant."""

    source: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class ReadResult:
    """What a reader returns: the conversations it read and the records it skipped."""

    logs: tuple[ChatLog, ...]
    problems: tuple[ReadProblem, ...]


class _Malformed(ValueError):
    """One record is malformed; the message says what was expected and what arrived."""


class _Problems:
    """Collects the problems of one read, logging each as it is found."""

    def __init__(self) -> None:
        self.found: list[ReadProblem] = []

    def add(self, source: Path, line: int | None, message: str) -> None:
        problem = ReadProblem(str(source), line, message)
        log.warning("skipped %s", problem)
        self.found.append(problem)


def _short(value: object) -> str:
    """``repr`` cut to a length that fits in a log line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- the JSONL format -----------------------------------------------------------------------

_FIELDS = ("id", "channel", "started_at", "turns", "metadata")
_REQUIRED = ("id", "started_at", "turns")
_TURN_FIELDS = ("role", "text", "ts")


def _timestamp(value: object, where: str) -> datetime:
    """An ISO-8601 string -> an aware datetime; a time without a zone is taken as UTC."""
    if not isinstance(value, str):
        raise _Malformed(f"{where}: expected an ISO-8601 timestamp string, got {_short(value)}")
    try:
        parsed = datetime.fromisoformat(value)  # Python 3.11 accepts a trailing "Z"
    except ValueError:
        raise _Malformed(f"{where}: expected an ISO-8601 timestamp, got {_short(value)}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _unknown_fields(record: Mapping[str, object], known: tuple[str, ...], where: str) -> None:
    # A misspelt optional field ("metdata") would otherwise silently become its default.
    unknown = [key for key in record if key not in known]
    if unknown:
        raise _Malformed(
            f"{where}unknown field(s) {', '.join(map(repr, unknown))}: expected only "
            f"{', '.join(known)} (put anything else in metadata)"
        )


def _parse_turn(raw: object, i: int) -> ChatTurn:
    where = f"turns[{i}]"
    if not isinstance(raw, dict):
        raise _Malformed(f"{where}: expected an object, got {_short(raw)}")
    _unknown_fields(raw, _TURN_FIELDS, f"{where}: ")
    role = raw.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise _Malformed(f"{where}.role: expected one of {_ROLE_NAMES}, got {_short(role)}")
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        raise _Malformed(f"{where}.text: expected a non-empty string, got {_short(text)}")
    ts = raw.get("ts")
    return ChatTurn(TurnRole(role), text, None if ts is None else _timestamp(ts, f"{where}.ts"))


def _parse_record(record: object) -> ChatLog:
    """One decoded JSONL line -> a ChatLog, or :class:`_Malformed` saying what is wrong."""
    if not isinstance(record, dict):
        raise _Malformed(f"expected a JSON object, got {type(record).__name__}")
    missing = [key for key in _REQUIRED if key not in record]
    if missing:
        raise _Malformed(f"missing required field(s): {', '.join(missing)}")
    _unknown_fields(record, _FIELDS, "")
    chat_id = record["id"]
    if not isinstance(chat_id, str) or not chat_id:
        raise _Malformed(f"id: expected a non-empty string, got {_short(chat_id)}")
    channel = record.get("channel", "import")
    if not isinstance(channel, str) or not channel:
        raise _Malformed(f"channel: expected a non-empty string, got {_short(channel)}")
    started_at = record["started_at"]
    turns = record["turns"]
    if not isinstance(turns, list):
        raise _Malformed(f"turns: expected a list, got {_short(turns)}")
    metadata = record.get("metadata", {})
    if not isinstance(metadata, dict):
        raise _Malformed(f"metadata: expected an object, got {_short(metadata)}")
    return ChatLog(
        id=chat_id,
        channel=channel,
        # null: the source did not know (Bitext has no times); see docs/chatlog-format.md.
        started_at=None if started_at is None else _timestamp(started_at, "started_at"),
        turns=tuple(_parse_turn(turn, i) for i, turn in enumerate(turns)),
        metadata=metadata,
    )


def read_chatlog_jsonl(path: Path | str) -> ReadResult:
    """Read a Frontdesk chat-log JSONL file (one conversation per line).

    Blank lines are ignored. A line that is not UTF-8 or JSON, is not an object, lacks a
    required field, has an unknown field, a field of the wrong type, an unknown role, an
    empty text, a bad timestamp, or repeats an earlier line's id is skipped and reported
    with its 1-based line number; every other line is kept.
    Raises :class:`ChatLogError` if the file cannot be opened.
    """
    path = Path(path)
    logs: list[ChatLog] = []
    problems = _Problems()
    first_seen: dict[str, int] = {}
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ChatLogError(f"cannot read chat logs from {path}: {exc.strerror}") from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                problems.add(path, number, f"not valid UTF-8: {exc.reason} at byte {exc.start}")
                continue
            if not text.strip():
                continue
            try:
                chat = _parse_record(json.loads(text))
            except json.JSONDecodeError as exc:
                problems.add(path, number, f"not valid JSON: {exc.msg} (column {exc.colno})")
                continue
            except _Malformed as exc:
                problems.add(path, number, str(exc))
                continue
            if chat.id in first_seen:
                # The index deletes by id: two conversations must not share one.
                problems.add(
                    path, number, f"id: {chat.id!r} already used on line {first_seen[chat.id]}"
                )
                continue
            first_seen[chat.id] = number
            logs.append(chat)
    return ReadResult(tuple(logs), tuple(problems.found))


def _iso(value: datetime) -> str:
    # Naive times are UTC by this format's rule: write the zone so it reads back equal.
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).isoformat()


def _record(chat: ChatLog) -> dict[str, object]:
    return {
        "id": chat.id,
        "channel": chat.channel,
        "started_at": None if chat.started_at is None else _iso(chat.started_at),
        "turns": [
            {
                "role": turn.role.value,
                "text": turn.text,
                "ts": None if turn.ts is None else _iso(turn.ts),
            }
            for turn in chat.turns
        ],
        "metadata": dict(chat.metadata),
    }


def write_chatlog_jsonl(logs: Iterable[ChatLog], path: Path | str) -> None:
    """Write conversations as chat-log JSONL; :func:`read_chatlog_jsonl` reads them back equal.

    The file is replaced only once every line is written. Raises :class:`ChatLogError`
    when a conversation's metadata holds a value JSON cannot represent.
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8", newline="\n") as out:
            for chat in logs:
                try:
                    line = json.dumps(_record(chat), ensure_ascii=False)
                except (TypeError, ValueError) as exc:
                    raise ChatLogError(
                        f"cannot write conversation {chat.id!r}: metadata must hold only JSON "
                        f"values (strings, numbers, booleans, null, lists, objects): {exc}"
                    ) from exc
                out.write(line + "\n")
        os.replace(partial, path)
    except OSError as exc:
        raise ChatLogError(f"cannot write chat logs to {path}: {exc.strerror}") from exc
    finally:
        partial.unlink(missing_ok=True)


# --- STAR ---------------------------------------------------------------------------------

_STAR_ROLES = {"User": TurnRole.CUSTOMER, "Wizard": TurnRole.AGENT}
_STAR_UTTERANCES = frozenset({"utter", "pick_suggestion"})


def _numeric_first(path: Path) -> tuple[int, int, str]:
    return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.name)


def _star_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ChatLogError(f"cannot read STAR dialogues from {path}: no such file or folder")
    folder = path / "dialogues" if (path / "dialogues").is_dir() else path
    files = sorted(folder.glob("*.json"), key=_numeric_first)
    if not files:
        raise ChatLogError(
            f"no STAR dialogues in {path}: expected *.json dialogue files in it or in its "
            "dialogues/ folder"
        )
    return files


def _unix_time(value: object, where: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Malformed(f"{where}.UnixTime: expected seconds since 1970, got {_short(value)}")
    return datetime.fromtimestamp(value, UTC)


def _star_dialogue(data: object) -> tuple[int, ChatLog]:
    """One decoded STAR file -> (DialogueID, ChatLog), or :class:`_Malformed`."""
    if not isinstance(data, dict):
        raise _Malformed(f"expected a STAR dialogue object, got {type(data).__name__}")
    dialogue_id, events = data.get("DialogueID"), data.get("Events")
    if isinstance(dialogue_id, bool) or not isinstance(dialogue_id, int):
        raise _Malformed(f"DialogueID: expected an integer, got {_short(dialogue_id)}")
    if not isinstance(events, list):
        raise _Malformed(f"Events: expected a list of events, got {_short(events)}")
    scenario = data.get("Scenario", {})
    if not isinstance(scenario, dict):
        raise _Malformed(f"Scenario: expected an object, got {_short(scenario)}")

    turns: list[ChatTurn] = []
    labels: list[str | None] = []
    times: list[datetime] = []
    for i, event in enumerate(events):
        where = f"Events[{i}]"
        if not isinstance(event, dict):
            raise _Malformed(f"{where}: expected an object, got {_short(event)}")
        when = _unix_time(event.get("UnixTime"), where)
        if when is not None:
            times.append(when)
        agent, action = event.get("Agent"), event.get("Action")
        role = _STAR_ROLES.get(agent) if isinstance(agent, str) else None
        # Queries, knowledge-base items, guide instructions and suggestion requests are
        # not messages anybody received; an utterance without text is no message either.
        if role is None or not isinstance(action, str) or action not in _STAR_UTTERANCES:
            continue
        text = event.get("Text")
        if text is None:
            continue
        if not isinstance(text, str):
            raise _Malformed(f"{where}.Text: expected a string, got {_short(text)}")
        if not text.strip():
            continue
        label = event.get("ActionLabel") if role is TurnRole.AGENT else None
        if label is not None and not isinstance(label, str):
            raise _Malformed(f"{where}.ActionLabel: expected a string, got {_short(label)}")
        turns.append(ChatTurn(role, text.strip(), when))
        labels.append(label)

    capabilities = scenario.get("WizardCapabilities", [])
    tasks = [c["Task"] for c in capabilities if isinstance(c, dict) and "Task" in c]
    chat = ChatLog(
        id=f"star-{dialogue_id}",
        channel="star",
        started_at=min(times, default=None),
        turns=tuple(turns),
        metadata={
            "dialogue_id": dialogue_id,
            "domains": scenario.get("Domains", []),
            "tasks": tasks,
            "happy": scenario.get("Happy"),
            "multi_task": scenario.get("MultiTask"),
            "completion_level": data.get("CompletionLevel"),
            "action_labels": labels,
        },
    )
    return dialogue_id, chat


def read_star(path: Path | str) -> ReadResult:
    """Read STAR dialogues: the ``dialogues/`` folder, the STAR root, or one dialogue file.

    User and wizard utterances (``Action`` ``utter`` or ``pick_suggestion`` with ``Text``)
    become ``customer`` and ``agent`` turns, with ``UnixTime`` as their time; other events
    (guide instructions, queries, knowledge-base items, suggestion requests) are not turns.
    ``metadata`` holds ``dialogue_id``, ``domains``, ``tasks`` (the wizard's task names),
    ``happy``, ``multi_task``, ``completion_level`` and ``action_labels``: each wizard turn's
    ``ActionLabel``, aligned with the turns (None for customer turns and free-typed wizard
    turns). ``started_at`` is the time of the dialogue's first event.

    A dialogue abandoned before anyone spoke is kept with no turns (its ``completion_level``
    says why). A file that is not JSON, lacks ``DialogueID`` or ``Events``, or holds a value
    of the wrong type is reported with ``line`` None. Logs come in ``DialogueID`` order.
    Raises :class:`ChatLogError` if ``path`` holds no dialogue files.
    """
    path = Path(path)
    read: list[tuple[int, ChatLog]] = []
    problems = _Problems()
    for file in _star_files(path):
        try:
            read.append(_star_dialogue(json.loads(file.read_bytes())))
        except OSError as exc:
            problems.add(file, None, f"cannot read the file: {exc.strerror}")
        except _Malformed as exc:
            problems.add(file, None, str(exc))
        except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError
            problems.add(file, None, f"not valid JSON: {exc}")
    read.sort(key=lambda pair: pair[0])
    return ReadResult(tuple(chat for _, chat in read), tuple(problems.found))


# --- Bitext -------------------------------------------------------------------------------

_BITEXT_NEEDED = ("instruction", "response")
_BITEXT_ENTITY = ("entity_type", "entity_value", "start_offset", "end_offset")


def _csv_rows(handle: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """(physical line where the row starts, fields) for each CSV row, blank lines included."""
    # Not strict: a stray quote inside a field is read as text, the way spreadsheets do;
    # a row that comes out with the wrong number of fields is then reported.
    reader = csv.reader(handle)
    start = 1
    for fields in reader:
        yield start, fields
        start = reader.line_num + 1  # a quoted response spans several physical lines


def _offset(value: str, name: str) -> int | None:
    if not value:
        return None
    if not value.isdigit():
        raise _Malformed(f"{name}: expected a character offset (an integer), got {value!r}")
    return int(value)


def _entity(row: Mapping[str, str]) -> dict[str, object] | None:
    if not row.get("entity_type"):
        return None
    # The value is Bitext's normalised form, not always instruction[start:end]
    # ("00004587345" is tagged "4587345"): both are kept as they are.
    return {
        "type": row["entity_type"],
        "value": row.get("entity_value", ""),
        "start": _offset(row.get("start_offset", ""), "start_offset"),
        "end": _offset(row.get("end_offset", ""), "end_offset"),
    }


def read_bitext(path: Path | str) -> ReadResult:
    """Read the Bitext customer-support CSV: each request becomes a two-turn conversation.

    ``instruction`` is the ``customer`` turn and ``response`` the ``agent`` turn; the id is
    ``bitext-<row>`` (the 1-based data row, header not counted), the channel ``bitext``,
    and ``metadata`` holds ``intent``, ``category``, ``tags`` and ``entities`` (a list of
    ``{"type", "value", "start", "end"}``). Bitext tags at most one entity a row; a file that
    repeats a request on consecutive rows, one row per entity, gives one conversation
    whose ``entities`` collect those rows (its id names the first). The shipped file has one
    row per request. Rows lacking the instruction or the response, with the wrong number
    of fields, or with a non-integer offset are reported with the CSV line where they start.
    Raises :class:`ChatLogError` if the file cannot be read or lacks those two columns.
    """
    path = Path(path)
    problems = _Problems()
    # (first data row, row fields, entities); consecutive rows of one request merge.
    requests: list[tuple[int, dict[str, str], list[dict[str, object]]]] = []
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ChatLogError(f"cannot read Bitext CSV {path}: {exc.strerror}") from exc
    with handle:
        rows = _csv_rows(handle)
        try:
            header = next(rows)[1]
            if not set(_BITEXT_NEEDED) <= set(header):
                raise ChatLogError(
                    f"{path}: expected a Bitext CSV whose header has the columns "
                    f"{', '.join(_BITEXT_NEEDED)}, got {', '.join(header) or 'no header'}"
                )
            data_row = 0
            for line, fields in rows:
                if not fields:
                    continue  # a blank line
                data_row += 1
                if len(fields) != len(header):
                    problems.add(path, line, f"expected {len(header)} fields, got {len(fields)}")
                    continue
                row = dict(zip(header, fields, strict=True))
                empty = [name for name in _BITEXT_NEEDED if not row[name].strip()]
                if empty:
                    problems.add(path, line, f"{' and '.join(empty)}: expected text, got ''")
                    continue
                try:
                    entity = _entity(row)
                except _Malformed as exc:
                    problems.add(path, line, str(exc))
                    continue
                request = {k: v for k, v in row.items() if k not in _BITEXT_ENTITY}
                if requests and requests[-1][1] == request:
                    requests[-1][2].extend([entity] if entity else [])
                else:
                    requests.append((data_row, request, [entity] if entity else []))
        except StopIteration:
            raise ChatLogError(f"{path}: expected a Bitext CSV, got an empty file") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            # An undecodable byte or an oversized field: the reader cannot go on past it.
            raise ChatLogError(f"{path}: not a readable CSV file: {exc}") from exc

    logs = tuple(
        ChatLog(
            id=f"bitext-{number}",
            channel="bitext",
            started_at=None,
            turns=(
                ChatTurn(TurnRole.CUSTOMER, row["instruction"].strip()),
                ChatTurn(TurnRole.AGENT, row["response"].strip()),
            ),
            metadata={
                "intent": row.get("intent"),
                "category": row.get("category"),
                "tags": row.get("tags"),
                "entities": entities,
            },
        )
        for number, row, entities in requests
    )
    return ReadResult(logs, tuple(problems.found))


# --- dispatch -----------------------------------------------------------------------------


def read_logs(path: Path | str) -> ReadResult:
    """Read conversations with the reader the path calls for.

    A ``.jsonl`` file is Frontdesk chat-log JSONL, a ``.csv`` file the Bitext CSV, and a
    folder holding ``*.json`` files or a ``dialogues/`` folder is STAR. Anything else
    raises :class:`ChatLogError`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_file() and suffix == ".jsonl":
        return read_chatlog_jsonl(path)
    if path.is_file() and suffix == ".csv":
        return read_bitext(path)
    if path.is_dir() and ((path / "dialogues").is_dir() or any(path.glob("*.json"))):
        return read_star(path)
    found = "does not exist" if not path.exists() else "is none of these"
    raise ChatLogError(
        f"cannot read chat logs from {path} ({found}): expected a Frontdesk chat-log .jsonl "
        "file, a Bitext customer-support .csv file, or a STAR folder (one holding *.json "
        "dialogues or a dialogues/ folder)"
    )
