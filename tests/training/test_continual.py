"""Continual learning: a model continues from an earlier one and keeps what it knew."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from channels.cli import main
from retrieval.bundle import Bundle
from training.continual import (
    LearntRows,
    read_conversations,
    read_rows,
    replay,
    start_from,
    write_conversations,
    write_rows,
)
from training.errors import TrainingError

OLD = {
    "track": [
        "where is my parcel", "has my package shipped yet", "tracking number for my delivery",
        "when will my order arrive", "my order hasn't come", "where's my stuff",
    ],
    "refund": [
        "I want my money back", "how do I get a refund", "refund my payment please",
        "you charged me twice, give it back", "when will I get my refund", "can I be reimbursed",
    ],
    "greet": ["hello there", "hi!", "good morning", "hey, anyone around?", "hiya", "hello"],
}  # fmt: skip
NEW = {
    "password": [
        "I forgot my password", "reset my password", "can't log in to my account",
        "my account is locked", "password reset link doesn't work", "I can't sign in",
    ],
    "invoice": [
        "send me an invoice", "I need a VAT receipt", "where can I download my invoice",
        "can you email the bill", "invoice for my company please", "I need a receipt",
    ],
}  # fmt: skip
PROBES = [
    ("where's my package?", "track"),
    ("can I have a refund", "refund"),
    ("hi there", "greet"),
    ("I need to reset my password", "password"),
    ("please send the invoice again", "invoice"),
]


def _csv(path: Path, rows: dict[str, list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("text", "intent"))
        for intent, texts in rows.items():
            writer.writerows((text, intent) for text in texts)
    return path


def test_replay_mixes_earlier_rows_of_each_intent_but_never_held_out_ones() -> None:
    """Up to N earlier rows an intent join the new rows; held-out rows, rows the new data
    repeats and intents that `keep` drops are left out."""
    earlier = LearntRows(
        texts=("a1", "a2", "a3", "a4", "b1", "b2", "gone", "dup"),
        labels=("a", "a", "a", "a", "b", "b", "old", "a"),
        held_out=(False, False, False, True, False, False, False, False),
    )
    texts, labels, replayed = replay(
        ["dup", "c1"], ["a", "c"], earlier, per_intent=2, keep=lambda name: name != "old"
    )
    assert texts[:2] == ["dup", "c1"] and labels[:2] == ["a", "c"]
    extra = list(zip(texts[2:], labels[2:], strict=True))
    assert replayed == len(extra) == 4
    assert sum(1 for _, y in extra if y == "a") == 2 and sum(1 for _, y in extra if y == "b") == 2
    assert {t for t, _ in extra} <= {"a1", "a2", "a3", "b1", "b2"}  # a4 held out, dup given


def test_learnt_rows_and_conversations_round_trip_redacted(tmp_path: Path) -> None:
    """A bundle's rows are stored redacted with their held-out mark; an older bundle
    without them reads as empty; a broken line names the file and line."""
    write_rows(tmp_path, ["call 555", "hi"], ["phone", "greet"], ["hi"], redact=lambda t: t.upper())
    rows = read_rows(tmp_path)
    assert rows.texts == ("CALL 555", "HI") and rows.held_out == (False, True)
    write_conversations(tmp_path, ["c2", "c1"], ["c3"])
    assert read_conversations(tmp_path) == (frozenset({"c1", "c2"}), frozenset({"c3"}))
    assert len(read_rows(tmp_path / "nothing")) == 0
    (tmp_path / "data" / "rows.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(TrainingError, match=r"rows.jsonl:1"):
        read_rows(tmp_path)


def test_start_from_refuses_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    """Continuing from something that is not a model folder says what is missing."""
    with pytest.raises(TrainingError, match=r"manifest\.json"):
        start_from(tmp_path)


def test_intents_train_from_a_model_learns_new_intents_and_keeps_the_old(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`intents train --from MODEL --train NEW`: NEW holds only new intents, and the model
    still knows the old ones (their rows replayed, their class vectors kept)."""
    first = tmp_path / "first"
    assert main(["intents", "train", "--train", str(_csv(tmp_path / "old.csv", OLD)),
                 "--out", str(first), "--json", "--nice", "0"]) == 0  # fmt: skip
    capsys.readouterr()
    assert set(read_rows(first).labels) == set(OLD)
    second = tmp_path / "second"
    new = _csv(tmp_path / "new.csv", NEW)
    assert main(["intents", "train", "--train", str(new), "--from", str(first),
                 "--out", str(second), "--json", "--nice", "0"]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert result["continued_from"] == str(first)
    assert result["replayed_rows"] > 0 and result["intents"] == 5
    bundle = Bundle.load(second)
    assert set(bundle.head.intents) == set(OLD) | set(NEW)
    manifest = json.loads((second / "manifest.json").read_text())
    assert manifest["continued_from"] == str(first)
    probs, _ = bundle.head.predict(bundle.encoder.encode([t for t, _ in PROBES]))
    predicted = [bundle.head.intents[int(i)] for i in np.argmax(probs, axis=1)]
    assert predicted == [y for _, y in PROBES]
    # and the new model's rows hold the old intents too, for the next continuation
    assert set(read_rows(second).labels) == set(OLD) | set(NEW)


@pytest.mark.slow
def test_a_continued_bundle_keeps_answering_from_the_earlier_conversations(
    shop_copy: Path, tmp_path: Path
) -> None:
    """Tonight's logs hold only new conversations: the continued bundle still indexes the
    earlier ones (carried over from the earlier bundle's redacted data/logs.jsonl)."""
    from retrieval.chatlog import read_chatlog_jsonl, write_chatlog_jsonl
    from retrieval.registry import Registry
    from training.args import TrainingArguments
    from training.pipeline import train_bot

    logs = read_chatlog_jsonl(shop_copy / "dialogues.jsonl").logs
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    half = len(logs) // 2
    secret = replace(logs[0], turns=(*logs[0].turns[:-1], replace(logs[0].turns[-1],
                     text=logs[0].turns[-1].text + " Write to jo.doe@example.com.")))  # fmt: skip
    write_chatlog_jsonl([secret, *logs[1:half]], first)
    write_chatlog_jsonl(logs[half:], second)
    registry = Registry(tmp_path / "models")
    args = TrainingArguments(epochs=0)
    one = train_bot(shop_copy, registry, logs=[first], args=args, progress=False)
    two = train_bot(
        shop_copy, registry, logs=[second], args=args, progress=False,
        start=start_from(one.path),
    )  # fmt: skip
    both = train_bot(shop_copy, registry, logs=[first, second], args=args, progress=False)
    assert one.indexed_turns < two.indexed_turns == both.indexed_turns
    manifest = json.loads((two.path / "manifest.json").read_text())
    assert manifest["carried_conversations"] == half and manifest["continued_from"] == "v0001"
    kept = (two.path / "data" / "logs.jsonl").read_text()
    assert "jo.doe@example.com" not in kept and "[EMAIL]" in kept
