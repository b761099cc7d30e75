"""Intent models of different encoder depths (`--layers`) served side by side, in one run.

Takes model folders written by `frontdesk intents train` on Banking77 (e.g. by
`benchmarks/intents_banking77.py --keep DIR --set layers=3`) and reports, for each, with
the ONNX exports the server loads (fp32 `model.onnx`, int8 `model.int8.onnx`):

- Banking77 test accuracy of the predicted intent (no rejection);
- single-message latency, tokenizer included (p50, p99 over `--messages` test messages
  after a warm-up), rounds interleaved over the models so a noisy neighbour hits all alike;
- batched throughput (messages/s, `--batch` at a time over the whole test split; one pass
  per model, the models one after the other);
- each figure's ratio to the first model's (the first `--model` is the reference).

Prints one JSON object.

    python benchmarks/encoder_depth.py --model /tmp/b77-l6 --model /tmp/b77-l3
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
from intents_onnx import latencies

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from retrieval.intent_head import IntentHead
    from retrieval.onnx_encoder import OnnxEncoder

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "banking77")
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    options = parser.parse_args()
    if len({m.name for m in options.model}) < len(options.model):
        raise SystemExit("--model: give folders with different names (they label the rows)")

    with (options.data / "test.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    texts = [r["text"] for r in rows]
    served: dict[str, tuple[OnnxEncoder, IntentHead]] = {}
    layers: dict[str, int] = {}
    for model in options.model:
        head = IntentHead.load(model / "intent_head.npz")
        config = json.loads((model / "encoder" / "config.json").read_text(encoding="utf-8"))
        for int8 in (False, True):
            name = f"{model.name}/{'int8' if int8 else 'fp32'}"
            served[name] = (OnnxEncoder(model / "encoder", int8=int8), head)
            layers[name] = int(config["num_hidden_layers"])
    figures: dict[str, dict[str, float]] = {}
    for name, (encoder, head) in served.items():
        truth = np.asarray([head.intents.index(r["category"]) for r in rows])
        started = time.perf_counter()
        embeddings = encoder.encode(texts, batch_size=options.batch)
        seconds = time.perf_counter() - started
        figures[name] = {
            "layers": layers[name],
            "accuracy": round(
                float((head.predict(embeddings)[0].argmax(axis=1) == truth).mean()), 4
            ),
            "batched_messages_per_s": round(len(texts) / seconds, 1),
        }
    sample = texts[: options.messages]
    timings: dict[str, list[float]] = {name: [] for name in served}
    for _ in range(options.rounds):
        for name, (encoder, _) in served.items():
            latencies(encoder.encode, sample[:20])  # warm-up
            timings[name] += latencies(encoder.encode, sample)
    for name, ms in timings.items():
        figures[name].update(
            p50_ms=round(float(np.percentile(ms, 50)), 2),
            p99_ms=round(float(np.percentile(ms, 99)), 2),
        )
    for precision in ("fp32", "int8"):
        reference = figures[f"{options.model[0].name}/{precision}"]
        for name, row in figures.items():
            if name.endswith(precision):
                row["p50_ratio"] = round(row["p50_ms"] / reference["p50_ms"], 3)
                row["throughput_ratio"] = round(
                    row["batched_messages_per_s"] / reference["batched_messages_per_s"], 3
                )
    print(json.dumps({"n": len(rows), "encoders": figures}, indent=2))


if __name__ == "__main__":
    main()
