"""Messages per second through ``Bundle.analyze`` (encoder + intents + retrieval + ranking),
by batch size, on the CPU: what the micro-batcher can deliver on this machine.

Each message comes with its context window (the last turns), as in serving. Inputs are the
customer turns of the given chat logs (the demo bot's by default). ``--compare-padding``
also runs the earlier batching, where a message and its window were padded to one length,
in the same run, and reports the ratio.

    .venv/bin/python benchmarks/analyze_throughput.py --model DIR [--logs FILE]
        [--batch-sizes 1,8,32,64] [--seconds 10] [--compare-padding] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrieval import onnx_encoder  # noqa: E402
from retrieval.bundle import Bundle  # noqa: E402
from retrieval.chatlog import read_logs  # noqa: E402
from retrieval.pairs import dialogue_pairs  # noqa: E402


def rate(
    bundle: Bundle, messages: list[str], windows: list[str], batch: int, seconds: float
) -> float:
    done, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        rows = [(i + j) % len(messages) for j in range(batch)]
        bundle.analyze([messages[r] for r in rows], [windows[r] for r in rows])
        done += batch
        i += batch
    return done / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--logs", type=Path, default=ROOT / "examples/shop/dialogues.jsonl")
    parser.add_argument("--batch-sizes", default="1,8,32,64")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--compare-padding", action="store_true")
    opts = parser.parse_args()

    bundle = Bundle.load(opts.model)
    pairs = dialogue_pairs(read_logs(opts.logs).logs)
    windows = [p.context for p in pairs]
    messages = [w.split(" [SEP] ")[0].removeprefix("customer: ") for w in windows]
    rate(bundle, messages, windows, 8, 1.0)  # warm up
    results: dict[str, object] = {"model": str(opts.model), "inputs": len(messages)}
    for batch in (int(b) for b in opts.batch_sizes.split(",")):
        row: dict[str, float] = {
            "by_length": round(rate(bundle, messages, windows, batch, opts.seconds), 1)
        }
        if opts.compare_padding:
            saved = onnx_encoder.PADDING_SLACK
            onnx_encoder.PADDING_SLACK = math.inf  # one padded batch, as before
            try:
                row["one_padding"] = round(rate(bundle, messages, windows, batch, opts.seconds), 1)
            finally:
                onnx_encoder.PADDING_SLACK = saved
            row["ratio"] = round(row["by_length"] / row["one_padding"], 2)
        results[f"batch_{batch}"] = row
        print(f"batch {batch}: {row}", flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
