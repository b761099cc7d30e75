"""Labelled intent data from the files people have: CSV, Rasa ``nlu.yml``, a bot folder.

- CSV with a header row and the columns ``text`` and ``intent`` (``category`` is accepted
  for ``intent``, as in Banking77); other columns are ignored.
- A Rasa NLU file (``nlu:`` list of ``- intent:`` items).
- A bot folder (``bot.yml``, or a Rasa project folder).
- A folder with parallel ``seq.in`` / ``label`` files (the Few-Shot-Intent-Detection layout).

Rows labelled with the out-of-scope label (``oos`` by default) are out-of-scope examples.
A malformed row is reported with its line number and skipped; a file that cannot be read
at all raises :class:`IntentDataError`.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import BotError
from training.errors import TrainingError

if TYPE_CHECKING:
    from bot.types import BotDefinition

OOS_LABEL = "oos"


class IntentDataError(TrainingError):
    """An intent data file that cannot be used at all."""


@dataclass(frozen=True)
class RowProblem:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(frozen=True)
class IntentRows:
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    problems: tuple[RowProblem, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> Counter[str]:
        return Counter(self.labels)


def read_intent_rows(path: Path | str) -> IntentRows:
    path = Path(path)
    if path.is_dir():
        if not any(path.iterdir()):
            raise IntentDataError(
                f"{path}: empty folder; expected a .csv file (text,intent), a Rasa nlu.yml, "
                "a bot folder (bot.yml), a Rasa project folder, or seq.in and label files"
            )
        if (path / "seq.in").is_file() and (path / "label").is_file():
            return _read_parallel(path)
        return _read_bot(path)
    if not path.is_file():
        raise IntentDataError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix in {".yml", ".yaml"}:
        return _read_nlu(path)
    raise IntentDataError(
        f"{path}: expected a .csv file (text,intent), a Rasa nlu.yml, or a bot folder"
    )


def _read_csv(path: Path) -> IntentRows:
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise IntentDataError(f"{path}: cannot read: {exc}") from exc
    try:
        with handle:
            delimiter = _delimiter(handle.readline())
            handle.seek(0)
            return _read_csv_rows(path, csv.reader(handle, delimiter=delimiter))
    except UnicodeDecodeError as exc:
        raise IntentDataError(
            f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8 (in Excel: CSV UTF-8)"
        ) from exc


def _delimiter(header: str) -> str:
    """The header line's separator: a comma, or a semicolon or tab where the header has no
    comma (spreadsheets in many locales save "CSV" with semicolons)."""
    if "," not in header:
        for other in (";", "\t"):
            if other in header:
                return other
    return ","


def _read_csv_rows(path: Path, reader: Any) -> IntentRows:
    """The rows of an open ``csv.reader``."""
    texts: list[str] = []
    labels: list[str] = []
    problems: list[RowProblem] = []
    try:
        header = next(reader)
    except StopIteration:
        raise IntentDataError(f"{path}: empty file, expected a header row") from None
    except csv.Error as exc:
        raise IntentDataError(f"{path}:1: {exc}") from exc
    columns = [c.strip().lower() for c in header]
    label_column = "intent" if "intent" in columns else "category"
    if "text" not in columns or label_column not in columns:
        raise IntentDataError(
            f"{path}:1: expected a header with the columns `text` and `intent` "
            f"(or `category`), got {header!r}"
        )
    ti, li = columns.index("text"), columns.index(label_column)
    while True:
        start = reader.line_num + 1  # a quoted cell may run over several lines
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a runaway quote past the field size limit
            problems.append(RowProblem(path, start, _spanning(str(exc), start, reader)))
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            message = f"expected {len(header)} columns, got {len(row)}"
            problems.append(RowProblem(path, start, _spanning(message, start, reader)))
            continue
        text, label = row[ti].strip(), row[li].strip()
        if not text or not label:
            problems.append(RowProblem(path, start, "empty `text` or intent"))
            continue
        texts.append(text)
        labels.append(label)
    return _checked(path, texts, labels, problems)


def _spanning(message: str, start: int, reader: Any) -> str:
    """``message`` about the row read from line ``start`` to the reader's line, and where
    that is more than one line, what probably made it so."""
    if reader.line_num <= start:
        return message
    return (
        f"{message} in lines {start}-{reader.line_num}, read as one row: "
        f"a quote opened on line {start} may not be closed"
    )


def _read_parallel(folder: Path) -> IntentRows:
    try:
        texts = (folder / "seq.in").read_text(encoding="utf-8").splitlines()
        labels = (folder / "label").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise IntentDataError(f"{folder}: cannot read: {exc}") from exc
    if len(texts) != len(labels):
        raise IntentDataError(
            f"{folder}: seq.in has {len(texts)} lines but label has {len(labels)}"
        )
    kept_t: list[str] = []
    kept_l: list[str] = []
    problems: list[RowProblem] = []
    for line, (text, label) in enumerate(zip(texts, labels, strict=True), start=1):
        if not text.strip() or not label.strip():
            problems.append(RowProblem(folder / "seq.in", line, "empty text or label"))
            continue
        kept_t.append(text.strip())
        kept_l.append(label.strip())
    return _checked(folder, kept_t, kept_l, problems)


def _read_nlu(path: Path) -> IntentRows:
    from bot.rasa_import import read_nlu

    try:
        intents = read_nlu(path)
    except BotError as exc:
        raise IntentDataError(str(exc)) from exc
    texts = [ex for examples in intents.values() for ex in examples]
    labels = [name for name, examples in intents.items() for _ in examples]
    return _checked(path, texts, labels, [])


def _read_bot(folder: Path) -> IntentRows:
    from bot.definition import load_bot

    try:
        definition = load_bot(folder)
    except BotError as exc:
        raise IntentDataError(str(exc)) from exc
    texts, labels = definition_rows(definition)
    return _checked(folder, texts, labels, [])


def definition_rows(definition: BotDefinition) -> tuple[list[str], list[str]]:
    """A bot's intent examples as (texts, labels)."""
    texts = [ex for intent in definition.intents for ex in intent.examples]
    labels = [intent.name for intent in definition.intents for _ in intent.examples]
    return texts, labels


def _checked(
    path: Path, texts: list[str], labels: list[str], problems: list[RowProblem]
) -> IntentRows:
    if not texts:
        raise IntentDataError(f"{path}: no usable rows")
    return IntentRows(tuple(texts), tuple(labels), tuple(problems))
