"""Chat logs: Frontdesk's JSONL format (docs/chatlog-format.md), STAR and Bitext readers.

Readers never drop anything silently: every record they skip becomes a :class:`ReadProblem`
with its source and line number, and is logged.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from retrieval.errors import ChatLogError

log = logging.getLogger(__name__)


class TurnRole(StrEnum):
    CUSTOMER = "customer"
    BOT = "bot"
    AGENT = "agent"


@dataclass(frozen=True)
class ChatTurn:
    role: TurnRole
    text: str
    ts: datetime | None = None


@dataclass(frozen=True)
class ChatLog:
    id: str
    channel: str
    started_at: datetime | None
    turns: tuple[ChatTurn, ...]
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class ReadProblem:
    source: str
    line: int | None
    message: str


@dataclass(frozen=True)
class ReadResult:
    logs: tuple[ChatLog, ...]
    problems: tuple[ReadProblem, ...]


class _Bad(ValueError):
    """One record is malformed; the message says what was expected and what arrived."""


def _problem(source: Path, line: int | None, message: str) -> ReadProblem:
    return ReadProblem(str(source), line, message)


def _result(source: Path, logs: list[ChatLog], problems: list[ReadProblem]) -> ReadResult:
    if problems:
        first = problems[0]
        where = f"{first.source}:{first.line}" if first.line is not None else first.source
        log.warning(
            "%s: skipped %d malformed record(s); first: %s: %s",
            source,
            len(problems),
            where,
            first.message,
        )
    return ReadResult(tuple(logs), tuple(problems))


def parse_time(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise _Bad(f"{where}: expected an ISO-8601 timestamp string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _Bad(f"{where}: expected an ISO-8601 timestamp, got {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _turn(raw: object, i: int) -> ChatTurn:
    if not isinstance(raw, dict):
        raise _Bad(f"turns[{i}]: expected an object, got {raw!r:.60}")
    role = raw.get("role")
    if role not in {r.value for r in TurnRole}:
        raise _Bad(f"turns[{i}].role: expected one of customer, bot, agent, got {role!r}")
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        raise _Bad(f"turns[{i}].text: expected non-empty text, got {text!r}")
    ts = raw.get("ts")
    return ChatTurn(TurnRole(role), text, None if ts is None else parse_time(ts, f"turns[{i}].ts"))


def parse_chatlog(record: object) -> ChatLog:
    """One JSONL record -> ChatLog, or :class:`ValueError` saying what is wrong."""
    if not isinstance(record, dict):
        raise _Bad(f"expected a JSON object, got {type(record).__name__}")
    missing = [k for k in ("id", "started_at", "turns") if k not in record]
    if missing:
        raise _Bad(f"missing required field(s): {', '.join(missing)}")
    if not isinstance(record["id"], str) or not record["id"]:
        raise _Bad(f"id: expected a non-empty string, got {record['id']!r}")
    turns = record["turns"]
    if not isinstance(turns, list) or not turns:
        raise _Bad(f"turns: expected a non-empty list, got {turns!r:.60}")
    channel = record.get("channel", "import")
    if not isinstance(channel, str):
        raise _Bad(f"channel: expected a string, got {channel!r}")
    metadata = record.get("metadata", {})
    if not isinstance(metadata, dict):
        raise _Bad(f"metadata: expected an object, got {metadata!r:.60}")
    return ChatLog(
        id=record["id"],
        channel=channel,
        started_at=parse_time(record["started_at"], "started_at"),
        turns=tuple(_turn(t, i) for i, t in enumerate(turns)),
        metadata=MappingProxyType(dict(metadata)),
    )


def read_chatlog_jsonl(path: Path | str) -> ReadResult:
    path = Path(path)
    logs: list[ChatLog] = []
    problems: list[ReadProblem] = []
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise ChatLogError(f"cannot read chat logs from {path}: {exc.strerror}") from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                logs.append(parse_chatlog(json.loads(line)))
            except json.JSONDecodeError as exc:
                problems.append(_problem(path, number, f"not valid JSON: {exc.msg}"))
            except _Bad as exc:
                problems.append(_problem(path, number, str(exc)))
    return _result(path, logs, problems)


def chatlog_record(chat: ChatLog) -> dict[str, Any]:
    return {
        "id": chat.id,
        "channel": chat.channel,
        "started_at": chat.started_at.isoformat() if chat.started_at else None,
        "turns": [
            {"role": t.role.value, "text": t.text, "ts": t.ts.isoformat() if t.ts else None}
            for t in chat.turns
        ],
        "metadata": dict(chat.metadata),
    }


def write_chatlog_jsonl(logs: Iterable[ChatLog], path: Path | str) -> None:
    with Path(path).open("w", encoding="utf-8") as fh:
        for chat in logs:
            fh.write(json.dumps(chatlog_record(chat), ensure_ascii=False) + "\n")


# --- STAR -------------------------------------------------------------------------------

_STAR_ROLES = {"User": TurnRole.CUSTOMER, "Wizard": TurnRole.AGENT}
_STAR_UTTERANCES = {"utter", "pick_suggestion"}


def _star_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    folder = path / "dialogues" if (path / "dialogues").is_dir() else path
    files = list(folder.glob("*.json"))
    return sorted(files, key=lambda p: (0, int(p.stem)) if p.stem.isdigit() else (1, p.stem))


def _star_dialogue(data: object) -> ChatLog:
    if not isinstance(data, dict) or "DialogueID" not in data or "Events" not in data:
        raise _Bad("expected a STAR dialogue object with DialogueID and Events")
    turns: list[ChatTurn] = []
    labels: list[str | None] = []
    for event in data["Events"]:
        role = _STAR_ROLES.get(event.get("Agent", ""))
        text = event.get("Text")
        if role is None or event.get("Action") not in _STAR_UTTERANCES:
            continue
        if not isinstance(text, str) or not text.strip():
            continue
        ts = event.get("UnixTime")
        when = datetime.fromtimestamp(ts, UTC) if isinstance(ts, int | float) else None
        turns.append(ChatTurn(role, text.strip(), when))
        labels.append(event.get("ActionLabel") if role is TurnRole.AGENT else None)
    if not turns:
        level = data.get("CompletionLevel", "unknown")
        raise _Bad(f"no user or wizard utterances (CompletionLevel: {level})")
    scenario = data.get("Scenario") or {}
    tasks = [c.get("Task") for c in scenario.get("WizardCapabilities", []) if isinstance(c, dict)]
    return ChatLog(
        id=f"star-{data['DialogueID']}",
        channel="star",
        started_at=turns[0].ts,
        turns=tuple(turns),
        metadata=MappingProxyType(
            {
                "dialogue_id": data["DialogueID"],
                "domains": scenario.get("Domains", []),
                "tasks": tasks,
                "happy": scenario.get("Happy"),
                "action_labels": labels,
            }
        ),
    )


def read_star(path: Path | str) -> ReadResult:
    """STAR dialogues (a ``dialogues/`` folder, the STAR root, or one file).

    User and wizard utterances (``utter`` and ``pick_suggestion``) become customer and
    agent turns; queries and instructions are not turns. Each wizard turn's ``ActionLabel``
    is kept in ``metadata["action_labels"]`` (aligned with the turns, None for customers).
    """
    path = Path(path)
    files = _star_files(path)
    if not files:
        raise ChatLogError(f"no STAR dialogue files (*.json) in {path}")
    logs: list[ChatLog] = []
    problems: list[ReadProblem] = []
    for file in files:
        try:
            logs.append(_star_dialogue(json.loads(file.read_text(encoding="utf-8"))))
        except json.JSONDecodeError as exc:
            problems.append(_problem(file, None, f"not valid JSON: {exc.msg}"))
        except _Bad as exc:
            problems.append(_problem(file, None, str(exc)))
    return _result(path, logs, problems)


# --- Bitext -----------------------------------------------------------------------------


def read_bitext(path: Path | str) -> ReadResult:
    """The Bitext customer-support CSV: each request/response row is a two-turn log.

    A response spans several physical lines (quoted newlines); line numbers reported are
    the physical lines where the bad row starts.
    """
    path = Path(path)
    logs: list[ChatLog] = []
    problems: list[ReadProblem] = []
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise ChatLogError(f"cannot read {path}: {exc.strerror}") from exc
    with handle:
        reader = csv.DictReader(handle)
        needed = {"instruction", "response"}
        if not needed <= set(reader.fieldnames or ()):
            raise ChatLogError(
                f"{path}: expected a Bitext CSV with columns instruction and response, "
                f"got {reader.fieldnames}"
            )
        line = reader.line_num + 1
        for row_number, row in enumerate(reader, start=1):
            start_line, line = line, reader.line_num + 1
            request = (row.get("instruction") or "").strip()
            response = (row.get("response") or "").strip()
            if not request or not response:
                empty = "instruction" if not request else "response"
                problems.append(_problem(path, start_line, f"{empty}: expected text, got ''"))
                continue
            logs.append(
                ChatLog(
                    id=f"bitext-{row_number}",
                    channel="bitext",
                    started_at=None,
                    turns=(
                        ChatTurn(TurnRole.CUSTOMER, request),
                        ChatTurn(TurnRole.AGENT, response),
                    ),
                    metadata=MappingProxyType(
                        {k: row.get(k) for k in ("intent", "category", "tags") if row.get(k)}
                    ),
                )
            )
    return _result(path, logs, problems)


def read_logs(path: Path | str) -> ReadResult:
    """Dispatch on the kind of path: ``.jsonl`` file, Bitext ``.csv``, or STAR folder."""
    path = Path(path)
    if path.is_file() and path.suffix == ".jsonl":
        return read_chatlog_jsonl(path)
    if path.is_file() and path.suffix == ".csv":
        return read_bitext(path)
    if path.is_dir() and ((path / "dialogues").is_dir() or any(path.glob("*.json"))):
        return read_star(path)
    if path.is_file() and path.suffix == ".json":
        return read_star(path)
    raise ChatLogError(
        f"cannot read chat logs from {path}: expected a chat-log .jsonl file, a Bitext .csv "
        "file, or a STAR dialogues folder"
    )
