"""Response ranking with the encoder's int8 export against fp32, on one `dialogues index`
bundle: what ``FRONTDESK_ENCODER_INT8`` costs in ranking quality (issue 3: int8 only where
accuracy holds). The index was built with the fp32 encoder, as serving finds it.

    .venv/bin/python benchmarks/dialogues_int8.py --model /tmp/star/tuned
        --test /tmp/star/test.jsonl

(`benchmarks/dialogues_star.py --keep /tmp/star` writes both.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.dialogue_model import evaluate_dialogues  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    opts = parser.parse_args()
    rows: dict[str, object] = {"model": str(opts.model)}
    for name, int8 in (("fp32", False), ("int8", True)):
        started = time.perf_counter()
        metrics, _ = evaluate_dialogues(opts.model, [opts.test], int8=int8)
        rows[name] = {**metrics, "seconds": round(time.perf_counter() - started, 1)}
        print(json.dumps({name: rows[name]}), file=sys.stderr, flush=True)
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
