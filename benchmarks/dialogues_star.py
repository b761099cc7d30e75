"""STAR response ranking, 1 of 100: the base MiniLM encoder vs the fine-tuned ranker.

Split (fixed): test = the dialogues whose ``DialogueID % 10 == 1`` (666 of the 5,322 shipped
dialogues; IDs that are multiples of 5 are withheld upstream), train = every other one. The
two parts are written as chat-log JSONL files and go through the same library calls as
``frontdesk dialogues index --logs TRAIN --out DIR [--no-train]`` and
``frontdesk dialogues eval --model DIR --logs TEST --json``.

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

from retrieval.chatlog import read_logs, write_chatlog_jsonl  # noqa: E402
from training.dialogue_model import evaluate_dialogues, index_dialogues  # noqa: E402
from training.ranker import RankerArguments  # noqa: E402

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
        built = index_dialogues(
            [work / "train.jsonl"], work / name, train=tune, args=args, progress=True
        )
        index_s = time.perf_counter() - started
        started = time.perf_counter()
        metrics, _ = evaluate_dialogues(work / name, [work / "test.jsonl"])
        results[name] = {
            **metrics,
            "index_seconds": round(index_s, 1),
            "eval_seconds": round(time.perf_counter() - started, 1),
            "indexed": built.pairs,
            "best_epoch": built.best_epoch,
            "valid": built.valid_metrics,
        }
        print(json.dumps({name: results[name]}), flush=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
