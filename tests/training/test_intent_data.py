"""Reading labelled intent rows from CSV, Rasa NLU, bot folders and seq.in/label folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.intent_data import IntentDataError, read_intent_rows

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


def test_csv_with_category_column_as_in_banking77(tmp_path: Path) -> None:
    """`category` is accepted for `intent`; extra columns are ignored; order is kept."""
    path = tmp_path / "train.csv"
    path.write_text('text,category,source\n"hi, there",greet,web\nrefund please,refund,app\n')
    rows = read_intent_rows(path)
    assert rows.texts == ("hi, there", "refund please")
    assert rows.labels == ("greet", "refund")
    assert rows.problems == ()


def test_malformed_rows_are_reported_with_their_line_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("text,intent\nhello,greet\nonly one column\n,greet\nbye,goodbye\n")
    rows = read_intent_rows(path)
    assert rows.texts == ("hello", "bye")
    assert [(p.line, p.message) for p in rows.problems] == [
        (3, "expected 2 columns, got 1"),
        (4, "empty `text` or intent"),
    ]
    assert str(rows.problems[0]).startswith(f"{path}:3: ")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("sentence,label\nhi,greet\n", r"train\.csv:1: expected a header with the columns"),
        ("text,intent\n", "no usable rows"),
    ],
)
def test_unusable_csv_is_an_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "train.csv"
    path.write_text(content)
    with pytest.raises(IntentDataError, match=message):
        read_intent_rows(path)


def test_rasa_nlu_file(tmp_path: Path) -> None:
    path = tmp_path / "nlu.yml"
    path.write_text(
        'version: "3.1"\nnlu:\n- intent: check_order\n  examples: |\n'
        "    - where is order [1042](order_number)\n    - track my parcel\n"
        "- intent: greet\n  examples: |\n    - hello\n"
    )
    rows = read_intent_rows(path)
    assert rows.texts == ("where is order 1042", "track my parcel", "hello")
    assert rows.labels == ("check_order", "check_order", "greet")


def test_bot_folder() -> None:
    rows = read_intent_rows(SHOP)
    counts = rows.counts()
    assert len(counts) >= 15 and min(counts.values()) >= 12
    assert "where is my order?" in {t.lower() for t in rows.texts} or counts["order_status"] >= 12


def test_seq_in_label_folder(tmp_path: Path) -> None:
    (tmp_path / "seq.in").write_text("hi\nrefund\n")
    (tmp_path / "label").write_text("greet\nrefund\n")
    assert read_intent_rows(tmp_path).labels == ("greet", "refund")
    (tmp_path / "label").write_text("greet\n")
    with pytest.raises(IntentDataError, match=r"seq\.in has 2 lines but label has 1"):
        read_intent_rows(tmp_path)


def test_unknown_kind_of_file(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_text("hello")
    with pytest.raises(IntentDataError, match=r"expected a \.csv file"):
        read_intent_rows(path)
    with pytest.raises(IntentDataError, match="no such file"):
        read_intent_rows(tmp_path / "missing.csv")
