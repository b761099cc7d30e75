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


def test_an_unclosed_quote_is_reported_where_it_opens(tmp_path: Path) -> None:
    """A quote that is never closed swallows the lines after it into one row: the problem
    names the line the quote opened on, not the last line it ate."""
    path = tmp_path / "train.csv"
    path.write_text('text,intent\nhello,greet\n"unterminated,refund\nwhere is it,track\nhi,greet\n')
    rows = read_intent_rows(path)
    assert rows.texts == ("hello",)
    (problem,) = rows.problems
    assert problem.line == 3
    assert "lines 3-5, read as one row: a quote opened on line 3 may not be closed" in (
        problem.message
    )


def test_an_unclosed_quote_in_a_large_file_is_reported_where_it_opens(tmp_path: Path) -> None:
    """Past csv's field size limit (128 KB) the runaway quote is a csv error, not a short
    row: still reported at the line it opened on."""
    path = tmp_path / "train.csv"
    body = "".join(f"where is my parcel number {i},track\n" for i in range(5000))
    path.write_text(f'text,intent\nhello,greet\n"unterminated,refund\n{body}')
    rows = read_intent_rows(path)
    assert rows.texts[0] == "hello"
    (problem,) = rows.problems
    assert problem.line == 3
    assert problem.message.startswith("field larger than field limit")
    assert "a quote opened on line 3 may not be closed" in problem.message


def test_a_quoted_text_over_several_lines_is_one_row(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text('text,intent\n"my parcel\nhas not come",track\nbye,goodbye\n')
    rows = read_intent_rows(path)
    assert rows.texts == ("my parcel\nhas not come", "bye") and rows.problems == ()


@pytest.mark.parametrize("separator", [";", "\t"])
def test_semicolon_and_tab_separated_files_are_read(tmp_path: Path, separator: str) -> None:
    """Spreadsheets in many locales save "CSV" with semicolons; the header says which."""
    path = tmp_path / "train.csv"
    path.write_text(
        f"text{separator}intent\nhi, there{separator}greet\nrefund please{separator}refund\n"
    )
    rows = read_intent_rows(path)
    assert rows.texts == ("hi, there", "refund please")
    assert rows.labels == ("greet", "refund")


def test_an_empty_folder_names_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(IntentDataError, match=r"empty folder; expected a \.csv file"):
        read_intent_rows(tmp_path)


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
