"""The Bitext customer-support CSV read as chat logs."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from retrieval.chatlog import ChatLog, ChatTurn, Malformed, Problems, ReadResult, TurnRole
from retrieval.errors import ChatLogError

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
        raise Malformed(f"{name}: expected a character offset (an integer), got {value!r}")
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
    problems = Problems()
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
                except Malformed as exc:
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
