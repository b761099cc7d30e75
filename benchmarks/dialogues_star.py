"""STAR response ranking, 1 of 100, through the bundle the server loads: the demo bot
trained with STAR's dialogues as its logs, the base encoder (logs indexed, not trained on)
vs the defaults (one encoder fine-tuned on the bot's intents and the logs' replies).

Split (fixed): test = the dialogues whose ``DialogueID % 10 == 1`` (666 of the 5,322 shipped
dialogues; IDs that are multiples of 5 are withheld upstream), train = every other one. The
two parts are written as chat-log JSONL files and go through the same library calls as
``frontdesk train --bot examples/shop --logs TRAIN [--ranker-epochs 0]`` and
``frontdesk dialogues eval --model current --logs TEST --json``.

    .venv/bin/python benchmarks/dialogues_star.py [--star ../shared/data/star/dialogues]
        [--only base|tuned] [--keep DIR] [--set NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataclasses import replace  # noqa: E402

from retrieval.chatlog import read_logs, write_chatlog_jsonl  # noqa: E402
from retrieval.registry import Registry  # noqa: E402
from training.args import TrainingArguments  # noqa: E402
from training.dialogue_model import evaluate_dialogues  # noqa: E402
from training.pipeline import train_bot  # noqa: E402
from training.ranker import RankerArguments  # noqa: E402

SHOP = ROOT / "examples" / "shop"

TEST_MOD, TEST_REST = 10, 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--star", type=Path, default=ROOT.parent / "shared/data/star/dialogues")
    parser.add_argument("--only", choices=["base", "tuned"])
    parser.add_argument("--keep", type=Path, help="write the models here instead of a temp dir")
    parser.add_argument(
        "--set", action="append", default=[], help="ranker argument, e.g. pairs_budget=6000"
    )
    opts = parser.parse_args()
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in opts.set)}
    args = RankerArguments(**overrides)

    logs = read_logs(opts.star).logs
    test = [log for log in logs if log.metadata["dialogue_id"] % TEST_MOD == TEST_REST]
    train = [log for log in logs if log.metadata["dialogue_id"] % TEST_MOD != TEST_REST]
    work = opts.keep or Path(tempfile.mkdtemp(prefix="star-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    write_chatlog_jsonl(train, work / "train.jsonl")
    write_chatlog_jsonl(test, work / "test.jsonl")
    results: dict[str, object] = {
        "split": f"test: DialogueID % {TEST_MOD} == {TEST_REST}",
        "train_dialogues": len(train),
        "test_dialogues": len(test),
        "ranker_args": overrides,
    }
    for name, tune in (("base", False), ("tuned", True)):
        if opts.only and opts.only != name:
            continue
        started = time.perf_counter()
        registry = Registry(work / name / "models")
        built = train_bot(
            SHOP,
            registry,
            logs=[work / "train.jsonl"],
            args=TrainingArguments(ranker_epochs=None if tune else 0),
            ranker_args=args if tune else replace(args, epochs=0),
        )
        train_s = time.perf_counter() - started
        started = time.perf_counter()
        metrics, _ = evaluate_dialogues(built.path, [work / "test.jsonl"])
        manifest = json.loads((built.path / "manifest.json").read_text(encoding="utf-8"))
        results[name] = {
            **metrics,
            "train_seconds": round(train_s, 1),
            "eval_seconds": round(time.perf_counter() - started, 1),
            "indexed": built.indexed_turns,
            "ranker": {k: manifest["ranker"][k] for k in ("driver", "best_epoch", "valid_metrics")},
            "reply_threshold": built.reply_threshold,
        }
        print(json.dumps({name: results[name]}), flush=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
