"""Messages per second through ``Bundle.analyze`` (encoder + intents + retrieval + ranking),
by batch size, on the CPU: what the micro-batcher can deliver on this machine.

Each message comes with its context window (the last turns), as in serving. Inputs are the
customer turns of the given chat logs (the demo bot's by default). ``--compare-padding``
also runs the earlier batching, where a message and its window were padded to one length,
in the same run, and reports the ratio. With ``--model`` given more than once (e.g. a
``--context joint`` and a ``--context fused`` bundle) the bundles take turns at each batch
size and each one's rate is also given as a ratio to the first's. A fused bundle caches the
turns it has seen, as the server does: after the first round over the logs every earlier
turn is cached and only the message is encoded.

    .venv/bin/python benchmarks/analyze_throughput.py --model DIR [--model DIR2] [--logs FILE]
        [--batch-sizes 1,8,32,64] [--seconds 10] [--compare-padding]
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
    cpu = time.process_time()
    while time.perf_counter() - start < seconds:
        rows = [(i + j) % len(messages) for j in range(batch)]
        bundle.analyze([messages[r] for r in rows], [windows[r] for r in rows])
        done += batch
        i += batch
    CPU_MS[batch] = round((time.process_time() - cpu) / done * 1000, 3)
    return done / (time.perf_counter() - start)


CPU_MS: dict[int, float] = {}
"""CPU time (all threads) per message of the last :func:`rate` run, by batch size."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, action="append")
    parser.add_argument("--logs", type=Path, default=ROOT / "examples/shop/dialogues.jsonl")
    parser.add_argument("--batch-sizes", default="1,8,32,64")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--compare-padding", action="store_true")
    parser.add_argument("--int8", action="store_true", help="the int8 encoder export")
    parser.add_argument("--threads", type=int, default=0, help="encoder threads (0: all cores)")
    opts = parser.parse_args()

    bundles = [Bundle.load(path, int8=opts.int8, threads=opts.threads) for path in opts.model]
    pairs = dialogue_pairs(read_logs(opts.logs).logs)
    windows = [p.context for p in pairs]
    messages = [w.split(" [SEP] ")[0].removeprefix("customer: ") for w in windows]
    for bundle in bundles:
        rate(bundle, messages, windows, 8, 1.0)  # warm up
    results: dict[str, object] = {
        "models": [str(m) for m in opts.model],
        "inputs": len(messages),
        "int8": opts.int8,
        "threads": opts.threads,
    }
    for batch in (int(b) for b in opts.batch_sizes.split(",")):
        row: dict[str, float] = {}
        for n, bundle in enumerate(bundles):
            tag = "" if n == 0 else f"_{n}"
            row[f"by_length{tag}"] = round(rate(bundle, messages, windows, batch, opts.seconds), 1)
            row[f"cpu_ms_per_message{tag}"] = CPU_MS[batch]
            if n:
                row[f"ratio{tag}_vs_first"] = round(row[f"by_length{tag}"] / row["by_length"], 2)
        if opts.compare_padding:
            bundle = bundles[0]
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
