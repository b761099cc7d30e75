"""The `frontdesk` command line: train --json, chat in a terminal, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from channels.cli import main
from tests.channels.server import free_port

ROOT = Path(__file__).resolve().parents[2]

TINY = """\
name: tiny
human_intent: human
intents:
  hello:
    examples: [hi, hello, hey there, good morning]
  hours:
    examples: [when are you open, opening hours, are you open on sunday, what time do you close]
  human:
    examples: [a person please, talk to a human, let me speak to an agent, real person]
responses:
  utter_hello: [Hello from tiny!]
  utter_hours: [We are open 9 to 5.]
"""


def test_train_json_then_chat(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`train --json` prints the result; `chat` answers typed lines with the new model."""
    bot = tmp_path / "tiny"
    bot.mkdir()
    (bot / "bot.yml").write_text(TINY)
    (bot / "dialogues.jsonl").write_text(
        '{"id": "d1", "started_at": "2026-01-01T10:00:00Z", "turns": ['
        '{"role": "customer", "text": "do you sell gift cards"}, '
        '{"role": "agent", "text": "Yes, in any amount from 10 euros."}]}\n'
        "this line is broken\n"
    )
    home = tmp_path / "home"
    code = main(["train", "--bot", str(bot), "--home", str(home), "--epochs", "3", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    result = json.loads(captured.out)
    assert result["version"] == "v0001" and result["intents"] == 3 and result["epochs"] == 3
    assert result["indexed_turns"] == 1 and result["log_problems"] == 1
    assert "dialogues.jsonl:2: not valid JSON" in captured.err

    again = ["train", "--bot", str(bot), "--home", str(home), "--if-stale", "--epochs", "3"]
    assert main(again) == 0
    assert "up to date" in capsys.readouterr().out

    chat = subprocess.run(
        [sys.executable, "-m", "channels.cli", "chat", "--bot", str(bot), "--home", str(home)],
        input="hello\nwhen are you open?\n\n",
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert chat.returncode == 0, chat.stderr
    assert "bot> Hello from tiny!" in chat.stdout
    assert "bot> We are open 9 to 5." in chat.stdout

    # other training options than the current model's: stale, so it trains
    assert main([*again, "--layers", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == "v0002"

    # a nightly export: the same conversations are the same logs, wherever they lie; once
    # the export has grown, the model is stale and trains, then it is current again
    export = tmp_path / "export.jsonl"
    export.write_text((bot / "dialogues.jsonl").read_text())
    nightly = [*again, "--layers", "2", "--logs", str(export)]
    assert main(nightly) == 0
    assert "model v0002" in capsys.readouterr().out
    with export.open("a") as out:
        out.write(
            '{"id": "d2", "started_at": "2026-01-02T10:00:00Z", "turns": ['
            '{"role": "customer", "text": "can I pay by card"}, '
            '{"role": "agent", "text": "Yes, every major card."}]}\n'
        )
    assert main([*nightly, "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["version"] == "v0003" and trained["indexed_turns"] == 2
    assert main(nightly) == 0
    assert "model v0003" in capsys.readouterr().out


def test_the_demo_bot_with_defaults_keeps_the_base_encoder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`frontdesk train` with no flags on the demo bot (16 examples an intent) fits the
    intent head to the base encoder, says so, records it, and the model serves."""
    from bot.definition import load_bot
    from channels.runtime import load_current_bundle

    shop = ROOT / "examples" / "shop"
    home = tmp_path / "home"
    assert main(["train", "--bot", str(shop), "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "encoder not fine-tuned, intent head fitted to it: few examples" in out
    manifest = json.loads((home / "models" / "v0001" / "manifest.json").read_text())
    assert manifest["epochs"] == 0 and manifest["history"] == []
    bundle = load_current_bundle(home / "models", load_bot(shop))
    known, unrelated, long_tail = bundle.analyze(
        ["any news on my parcel 1042?", "tell me a joke", "do you offer gift wrapping?"]
    )
    assert known.intents[0][0] == "order_status" and known.out_of_scope < 0.5
    assert unrelated.out_of_scope >= 0.5
    assert "Gift wrap" in long_tail.replies[0].text  # past dialogues, base encoder


def test_bad_bot_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed bot.yml exits with status 2 and prints file:line and what was expected."""
    (tmp_path / "bot.yml").write_text(TINY.replace("  hours:\n", "  hours:\n    respnse: x\n"))
    code = main(["train", "--bot", str(tmp_path), "--home", str(tmp_path / "h")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'bot.yml'}:7: intents.hours.respnse: unknown key" in err


def test_serve_without_a_model_says_what_to_do(tmp_path: Path) -> None:
    """`serve` with no trained model fails fast with a message naming `frontdesk train`."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "channels.cli",
            "serve",
            "--bot",
            str(ROOT / "examples/shop"),
            "--home",
            str(tmp_path),
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "no trained model" in proc.stderr and "frontdesk train" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_invalid_setting_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An out-of-range setting exits with status 2 and names the setting, without a traceback."""
    assert main(["serve", "--port", "70000"]) == 2
    assert "port" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "niceness"),
    [
        (["intents", "train", "--train", "missing.csv", "--out", "m"], 19),
        (["intents", "train", "--train", "missing.csv", "--out", "m", "--nice", "5"], 5),
        (["train", "--bot", "missing-bot", "--nice", "7"], 7),
        (["intents", "eval", "--model", "m", "--test", "missing.csv"], 0),  # not training
    ],
)
def test_training_commands_lower_their_cpu_priority(
    tmp_path: Path, argv: list[str], niceness: int
) -> None:
    """From the command line, training commands run at `--nice` (19 unless given) so that a
    server on the same cores keeps its latency; other commands keep the priority. (Called
    with an argument list, as from Python, `main` leaves its process's priority alone.)"""
    script = (
        "import os, sys; from channels.cli import main; sys.argv = ['frontdesk', *sys.argv[1:]]; "
        "before = os.getpriority(os.PRIO_PROCESS, 0); code = main(); "
        "print(code, os.getpriority(os.PRIO_PROCESS, 0) - before)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "FRONTDESK_HOME": str(tmp_path / "h")},
    )
    code, lowered = proc.stdout.split()
    assert code == "2", proc.stderr  # each stops at its missing input, before any training
    assert int(lowered) == min(niceness, 19 - os.getpriority(os.PRIO_PROCESS, 0))


def test_nice_out_of_range_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["intents", "train", "--train", "t.csv", "--out", "m", "--nice", "20"])
    assert refused.value.code == 2
    assert "--nice: expected 0 to 19, got 20" in capsys.readouterr().err
