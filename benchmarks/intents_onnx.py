"""Serving the intent model: torch vs ONNX (fp32) vs ONNX dynamic int8, in one run.

Takes a model folder written by `frontdesk intents train` on Banking77 (e.g. by
`benchmarks/intents_banking77.py --keep DIR`), quantises a copy of its ONNX encoder to int8
(onnxruntime dynamic quantisation), and reports for each: Banking77 test accuracy of the
predicted intent (no rejection) and single-message encoder latency (mean over 300 messages,
one at a time). Prints one JSON object.

    python benchmarks/intents_onnx.py --model DIR [--data ../shared/data/banking77]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from retrieval.encoder import Encoder
    from retrieval.intent_head import IntentHead
    from retrieval.onnx_encoder import ONNX_FILE, OnnxEncoder

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "banking77")
    parser.add_argument("--messages", type=int, default=300)
    options = parser.parse_args()

    head = IntentHead.load(options.model / "intent_head.npz")
    with (options.data / "test.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    texts = [r["text"] for r in rows]
    truth = np.asarray([head.intents.index(r["category"]) for r in rows])
    result: dict[str, object] = {"model": str(options.model), "n": len(rows)}
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        quantized = Path(tmp) / "encoder"
        shutil.copytree(options.model / "encoder", quantized)
        quantize_dynamic(
            str(options.model / "encoder" / ONNX_FILE),
            str(quantized / ONNX_FILE),
            weight_type=QuantType.QInt8,
        )
        encoders = {
            "torch_fp32": Encoder(options.model / "encoder"),
            "onnx_fp32": OnnxEncoder(options.model / "encoder"),
            "onnx_int8": OnnxEncoder(quantized),
        }
        for name, encoder in encoders.items():
            probs, _ = head.predict(encoder.encode(texts))
            started = time.perf_counter()
            for text in texts[: options.messages]:
                encoder.encode([text])
            ms = (time.perf_counter() - started) / options.messages * 1000
            result[name] = {
                "accuracy": float((probs.argmax(axis=1) == truth).mean()),
                "single_message_ms": round(ms, 2),
            }
        result["onnx_int8_size_mb"] = round((quantized / ONNX_FILE).stat().st_size / 1e6, 1)
        result["onnx_fp32_size_mb"] = round(
            (options.model / "encoder" / ONNX_FILE).stat().st_size / 1e6, 1
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
