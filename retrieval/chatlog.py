"""Past conversations: the chat-log JSONL format (readers for STAR and Bitext: star.py, bitext.py).

The format is documented in ``docs/chatlog-format.md``. Readers never drop a record
silently: every record they skip becomes a :class:`ReadProblem` (source, line, what was
expected and what arrived) in the :class:`ReadResult`, and is logged as a warning.
Only a source that cannot be read at all (a missing file, a CSV without the Bitext
columns, a path of an unknown kind) raises :class:`~retrieval.errors.ChatLogError`.

Standard library only: this module is imported by tools that must not load torch or faiss.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
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
    "read_chatlog_jsonl",
    "read_logs",
    "write_chatlog_jsonl",
]

log = logging.getLogger(__name__)


# --- domain values ------------------------------------------------------------------------


class TurnRole(StrEnum):
    """Who wrote a turn: the customer, the bot, a human agent, or the platform itself."""

    CUSTOMER = "customer"
    BOT = "bot"
    """The bot's answers (and its questions back, such as "is it one of these?")."""
    AGENT = "agent"
    SYSTEM = "system"
    """Notices about the conversation itself, not answers: "I'll pass you to one of my
    colleagues", "you are number 2 in the queue", "our team is back Monday at 09:00"."""


_ROLES = frozenset(role.value for role in TurnRole)
_ROLE_NAMES = ", ".join(role.value for role in TurnRole)


@dataclass(frozen=True)
class ChatTurn:
    """One message of a conversation. ``ts`` is None when the source has no time."""

    role: TurnRole
    text: str
    ts: datetime | None = None
    model: str | None = None
    """The model version that chose a bot turn (``frontdesk export`` writes it)."""

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


class Malformed(ValueError):
    """One record is malformed; the message says what was expected and what arrived."""


class Problems:
    """Collects the problems of one read, logging each as it is found."""

    def __init__(self) -> None:
        self.found: list[ReadProblem] = []

    def add(self, source: Path, line: int | None, message: str) -> None:
        problem = ReadProblem(str(source), line, message)
        log.warning("skipped %s", problem)
        self.found.append(problem)


def short_repr(value: object) -> str:
    """``repr`` cut to a length that fits in a log line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- the JSONL format -----------------------------------------------------------------------

_FIELDS = ("id", "channel", "started_at", "turns", "metadata")
_REQUIRED = ("id", "started_at", "turns")
_TURN_FIELDS = ("role", "text", "ts", "model")


def _timestamp(value: object, where: str) -> datetime:
    """An ISO-8601 string -> an aware datetime; a time without a zone is taken as UTC."""
    if not isinstance(value, str):
        raise Malformed(f"{where}: expected an ISO-8601 timestamp string, got {short_repr(value)}")
    try:
        parsed = datetime.fromisoformat(value)  # Python 3.11 accepts a trailing "Z"
    except ValueError:
        raise Malformed(
            f"{where}: expected an ISO-8601 timestamp, got {short_repr(value)}"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _unknown_fields(record: Mapping[str, object], known: tuple[str, ...], where: str) -> None:
    # A misspelt optional field ("metdata") would otherwise silently become its default.
    unknown = [key for key in record if key not in known]
    if unknown:
        raise Malformed(
            f"{where}unknown field(s) {', '.join(map(repr, unknown))}: expected only "
            f"{', '.join(known)} (put anything else in metadata)"
        )


def _parse_turn(raw: object, i: int) -> ChatTurn:
    where = f"turns[{i}]"
    if not isinstance(raw, dict):
        raise Malformed(f"{where}: expected an object, got {short_repr(raw)}")
    _unknown_fields(raw, _TURN_FIELDS, f"{where}: ")
    role = raw.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise Malformed(f"{where}.role: expected one of {_ROLE_NAMES}, got {short_repr(role)}")
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        raise Malformed(f"{where}.text: expected a non-empty string, got {short_repr(text)}")
    ts = raw.get("ts")
    model = raw.get("model")
    if model is not None and not isinstance(model, str):
        raise Malformed(f"{where}.model: expected a version name or null, got {short_repr(model)}")
    when = None if ts is None else _timestamp(ts, f"{where}.ts")
    return ChatTurn(TurnRole(role), text, when, model)


def _parse_record(record: object) -> ChatLog:
    """One decoded JSONL line -> a ChatLog, or :class:`Malformed` saying what is wrong."""
    if not isinstance(record, dict):
        raise Malformed(f"expected a JSON object, got {type(record).__name__}")
    missing = [key for key in _REQUIRED if key not in record]
    if missing:
        raise Malformed(f"missing required field(s): {', '.join(missing)}")
    _unknown_fields(record, _FIELDS, "")
    chat_id = record["id"]
    if not isinstance(chat_id, str) or not chat_id:
        raise Malformed(f"id: expected a non-empty string, got {short_repr(chat_id)}")
    channel = record.get("channel", "import")
    if not isinstance(channel, str) or not channel:
        raise Malformed(f"channel: expected a non-empty string, got {short_repr(channel)}")
    started_at = record["started_at"]
    turns = record["turns"]
    if not isinstance(turns, list):
        raise Malformed(f"turns: expected a list, got {short_repr(turns)}")
    metadata = record.get("metadata", {})
    if not isinstance(metadata, dict):
        raise Malformed(f"metadata: expected an object, got {short_repr(metadata)}")
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
    problems = Problems()
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
            except Malformed as exc:
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
        "turns": [_turn_record(turn) for turn in chat.turns],
        "metadata": dict(chat.metadata),
    }


def _turn_record(turn: ChatTurn) -> dict[str, object]:
    record: dict[str, object] = {
        "role": turn.role.value,
        "text": turn.text,
        "ts": None if turn.ts is None else _iso(turn.ts),
    }
    if turn.model is not None:  # written only where known: other logs stay as they were
        record["model"] = turn.model
    return record


def chatlog_line(chat: ChatLog) -> str:
    """One conversation as a line of chat-log JSONL (no newline). Raises
    :class:`ChatLogError` when its metadata holds a value JSON cannot represent."""
    try:
        return json.dumps(_record(chat), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ChatLogError(
            f"cannot write conversation {chat.id!r}: metadata must hold only JSON "
            f"values (strings, numbers, booleans, null, lists, objects): {exc}"
        ) from exc


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
                out.write(chatlog_line(chat) + "\n")
        os.replace(partial, path)
    except OSError as exc:
        raise ChatLogError(f"cannot write chat logs to {path}: {exc.strerror}") from exc
    finally:
        partial.unlink(missing_ok=True)


# --- dispatch -----------------------------------------------------------------------------


def read_logs(path: Path | str) -> ReadResult:
    """Read conversations with the reader the path calls for.

    A ``.jsonl`` file is Frontdesk chat-log JSONL, a ``.csv`` file the Bitext CSV, and a
    folder holding ``*.json`` files or a ``dialogues/`` folder is STAR. Anything else
    raises :class:`ChatLogError`.
    """
    from retrieval.bitext import read_bitext
    from retrieval.star import read_star

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
