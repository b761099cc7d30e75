"""Past chats through the one pipeline: `frontdesk train --bot DIR --logs PATH` publishes
the bundle, `frontdesk dialogues eval --model current --json` scores it as served, and the
old `frontdesk dialogues index` names the command that replaced it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from channels.cli import main
from retrieval.bundle import Bundle
from retrieval.chatlog import ChatLog, ChatTurn, TurnRole, write_chatlog_jsonl
from retrieval.pairs import message_window

C, A = TurnRole.CUSTOMER, TurnRole.AGENT
TOPICS = [
    ("my parcel never arrived", "So sorry! I've sent a replacement, it ships today."),
    ("I was charged twice for one order", "I've refunded the duplicate charge to your card."),
    ("I can't log in to my account", "I've emailed you a link to reset your password."),
    ("how do I cancel my subscription", "You can cancel any time under Settings > Plan."),
    ("do you deliver to Canada", "Yes, we deliver to Canada within 5 working days."),
    ("can I change my delivery address", "Sure, I've updated the address on your order."),
]


def write_logs(path: Path, n: int, offset: int = 0) -> Path:
    logs = []
    for i in range(offset, offset + n):
        question, answer = TOPICS[i % len(TOPICS)]
        turns = (
            ChatTurn(C, f"hello, {question}. I'm user{i}@mail.example"),
            ChatTurn(A, answer),
            ChatTurn(C, "thanks a lot"),
            ChatTurn(A, "Anything else? Write to help@shop.example any time."),
        )
        logs.append(ChatLog(f"conv-{i}", "web", None, turns))
    write_chatlog_jsonl(logs, path)
    return path


BOT = """\
name: support
redaction: {keep: [help@shop.example]}
intents:
  greet: {examples: [hi, hello, good morning, hey there, hello team]}
  goodbye: {examples: [bye, goodbye, see you, bye for now, all done]}
responses:
  utter_greet: [{text: "Hi! How can I help?"}]
  utter_goodbye: [{text: "Bye!"}]
"""


def make_bot(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bot.yml").write_text(BOT, encoding="utf-8")
    return folder


def train(home: Path, bot: Path, logs: Path, *extra: str) -> Path:
    """`frontdesk train --logs` into ``home``; -> the published bundle's folder."""
    code = main(["train", "--bot", str(bot), "--home", str(home), "--logs", str(logs),
                 "--json", *extra])  # fmt: skip
    assert code == 0
    current = (home / "models" / "current").read_text(encoding="utf-8").strip()
    return home / "models" / current


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dialogues")
    logs = write_logs(folder / "train.jsonl", 30)
    return train(folder / "home", make_bot(folder / "bot"), logs)


def test_train_writes_one_bundle_with_redacted_pairs(model: Path) -> None:
    """The bundle that serves holds the logs' pairs, with the customers' personal data
    redacted (the bot's own address kept); 60 pairs are too few to train the ranker on."""
    bundle = Bundle.load(model)
    assert bundle.manifest["ranker"]["trained"] is False
    assert bundle.head.intents == ("goodbye", "greet")
    # 30 conversations x 2 replies, but once the emails are redacted the contexts repeat:
    # 6 topics x 2 distinct (context, reply) pairs
    assert len(bundle.index) == 12
    stored = (model / "index" / "index_meta.jsonl").read_text(encoding="utf-8")
    assert "@mail.example" not in stored  # the customers' emails never reach the index
    assert "[EMAIL]" in stored
    assert "help@shop.example" in stored  # the shop's own address is kept


def test_the_bundle_answers_from_past_replies_given_the_context(model: Path) -> None:
    bundle = Bundle.load(model)
    window = message_window([], "I was billed twice for the same order")
    (analysis,) = bundle.analyze(["I was billed twice for the same order"], [window])
    assert analysis.replies[0].text == TOPICS[1][1]
    assert 0.0 <= analysis.replies[-1].score <= analysis.replies[0].score <= 1.0
    assert len({r.text for r in analysis.replies}) == len(analysis.replies)  # no duplicates


def test_eval_prints_the_contract_json(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    test = write_logs(tmp_path / "test.jsonl", 12, offset=100)
    capsys.readouterr()
    home = model.parents[1]  # the registry's `current`, as the server loads it
    assert main(["dialogues", "eval", "--model", "current", "--home", str(home),
                 "--logs", str(test), "--json"]) == 0  # fmt: skip
    numbers = json.loads(capsys.readouterr().out)
    assert list(numbers) == [
        "n", "recall@1", "recall@5", "recall@10", "mrr", "model", "version", "precision",
    ]  # fmt: skip
    assert numbers["model"] == str(model.absolute()) and numbers["version"] == model.name
    assert numbers["precision"] == "fp32"
    assert numbers["n"] == 24
    assert 0 < numbers["recall@1"] <= numbers["recall@5"] <= numbers["recall@10"] <= 1.0
    assert numbers["recall@1"] <= numbers["mrr"] <= 1.0
    # 23 candidates a case: chance would put the true reply in the top 5 about 22 % of the time
    assert numbers["recall@5"] >= 0.6


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing log is named and nothing is published; the retired `dialogues index`
    says which command replaced it."""
    bot = make_bot(tmp_path / "bot")
    home = tmp_path / "home"
    code = main(["train", "--bot", str(bot), "--home", str(home),
                 "--logs", str(tmp_path / "nope.jsonl")])  # fmt: skip
    assert code == 2
    assert "nope.jsonl" in capsys.readouterr().err
    assert not (home / "models" / "current").exists()
    code = main(["dialogues", "index", "--logs", "x.jsonl", "--out", str(tmp_path / "m")])
    assert code == 2
    assert "frontdesk train --bot DIR --logs PATH" in capsys.readouterr().err


def test_a_fused_bundle_says_so_and_answers_as_well(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`train --context fused`: the bundle records the encoding, serves fused windows (the
    context's turns cached), and eval reads windows the same way."""
    logs = write_logs(tmp_path / "train.jsonl", 30)
    out = train(tmp_path / "home", make_bot(tmp_path / "bot"), logs, "--context", "fused")
    bundle = Bundle.load(out)
    assert bundle.manifest["context_encoding"]["mode"] == "fused"
    history = [("customer", "hi"), ("agent", "Hello, how can I help?")]
    message = "I was billed twice for the same order"
    (analysis,) = bundle.analyze([message], [message_window(history, message)])
    assert analysis.replies[0].text == TOPICS[1][1]
    assert len(bundle.turns) == 3  # the message and the two turns before it
    test = write_logs(tmp_path / "test.jsonl", 12, offset=100)
    capsys.readouterr()
    assert main(["dialogues", "eval", "--model", str(out), "--logs", str(test), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recall@5"] >= 0.6
