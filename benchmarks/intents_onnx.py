"""Serving the intent model: torch vs ONNX fp32 vs ONNX int8 variants, in one run.

Takes a model folder written by `frontdesk intents train` on Banking77 (e.g. by
`benchmarks/intents_banking77.py --keep DIR`) and reports, for each encoder:

- Banking77 test accuracy of the predicted intent (no rejection), and how many test rows
  get another intent than under ONNX fp32 (``changed_vs_fp32``);
- single-message latency, tokenizer included, one message at a time (p50, p99, mean over
  ``--messages`` test messages after a warm-up), rounds interleaved so that a noisy
  neighbour hits every encoder alike;
- batched throughput (messages/s, ``--batch`` at a time over the whole test split).

The int8 variants are onnxruntime dynamic quantisations of the bundle's fp32 graph:
``per_tensor`` is what training wrote up to now, ``per_channel`` one scale per output
channel, ``per_channel_reduce_range`` also 7-bit weights (no int16 overflow in the u8 x s8
multiply-add of CPUs without VNNI). Prints one JSON object.

    python benchmarks/intents_onnx.py --model DIR [--data ../shared/data/banking77]
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

INT8_VARIANTS = {
    "per_tensor": {"per_channel": False, "reduce_range": False},
    "per_channel": {"per_channel": True, "reduce_range": False},
    "per_channel_reduce_range": {"per_channel": True, "reduce_range": True},
}


def quantized_copy(model: Path, tmp: Path, name: str) -> Path:
    import shutil

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from retrieval.onnx_encoder import ONNX_FILE

    folder = tmp / name
    shutil.copytree(model / "encoder", folder, ignore=shutil.ignore_patterns("*.onnx"))
    quantize_dynamic(
        str(model / "encoder" / ONNX_FILE),
        str(folder / ONNX_FILE),
        weight_type=QuantType.QInt8,
        **INT8_VARIANTS[name],
    )
    return folder


def latencies(encode: Callable[[list[str]], object], texts: list[str]) -> list[float]:
    out = []
    for text in texts:
        started = time.perf_counter()
        encode([text])
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    from retrieval.encoder import Encoder
    from retrieval.intent_head import IntentHead
    from retrieval.onnx_encoder import ONNX_FILE, OnnxEncoder

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "banking77")
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    options = parser.parse_args()

    head = IntentHead.load(options.model / "intent_head.npz")
    with (options.data / "test.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    texts = [r["text"] for r in rows]
    truth = np.asarray([head.intents.index(r["category"]) for r in rows])
    result: dict[str, object] = {"model": str(options.model), "n": len(rows)}
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        encoders: dict[str, object] = {
            "torch_fp32": Encoder(options.model / "encoder"),
            "onnx_fp32": OnnxEncoder(options.model / "encoder"),
        }
        for name in INT8_VARIANTS:
            folder = quantized_copy(options.model, Path(tmp), name)
            encoders[f"onnx_int8_{name}"] = OnnxEncoder(folder)
        predicted: dict[str, np.ndarray] = {}
        figures: dict[str, dict[str, object]] = {}
        for name, encoder in encoders.items():
            started = time.perf_counter()
            embeddings = encoder.encode(texts, batch_size=options.batch)  # type: ignore[attr-defined]
            seconds = time.perf_counter() - started
            predicted[name] = head.predict(embeddings)[0].argmax(axis=1)
            figures[name] = {
                "accuracy": round(float((predicted[name] == truth).mean()), 4),
                "batched_messages_per_s": round(len(texts) / seconds, 1),
            }
        for name in encoders:
            changed = predicted[name] != predicted["onnx_fp32"]
            figures[name]["changed_vs_fp32"] = int(changed.sum())
        sample = texts[: options.messages]
        timings: dict[str, list[float]] = {name: [] for name in encoders}
        for _ in range(options.rounds):
            for name, encoder in encoders.items():
                latencies(encoder.encode, sample[:20])  # type: ignore[attr-defined]  # warm-up
                timings[name] += latencies(encoder.encode, sample)  # type: ignore[attr-defined]
        for name, ms in timings.items():
            figures[name].update(
                p50_ms=round(float(np.percentile(ms, 50)), 2),
                p99_ms=round(float(np.percentile(ms, 99)), 2),
                mean_ms=round(float(np.mean(ms)), 2),
            )
        fp32 = figures["onnx_fp32"]
        for name in encoders:
            figures[name]["p50_vs_onnx_fp32"] = round(
                float(figures[name]["p50_ms"]) / float(fp32["p50_ms"]),
                3,  # type: ignore[arg-type]
            )
            if name.startswith("onnx_int8"):
                file = Path(encoders[name].path) / ONNX_FILE  # type: ignore[attr-defined]
                figures[name]["file_mb"] = round(file.stat().st_size / 1e6, 1)
        result["encoders"] = figures
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
