"""Per-message cost of retrieval + ranking on top of the encoder pass, on a real bundle.

For each of ``--n`` customer turns of the test logs (one at a time, as a message arrives):
the encoder pass (message alone, and message + context window in one batch, which is what
serving runs), then FAISS search + candidate ranking (``retrieval.ranking.rank_hits``) with
the query embedding already computed: that second part is what this issue adds per message.

    .venv/bin/python benchmarks/retrieval_cost.py --model DIR --logs TEST.jsonl [--n 500]
        [--compare-reply-dtype]

``--compare-reply-dtype`` also times the search + ranking part with the index's reply
embeddings held as float16 (how the index keeps them) and as float32, alternated in rounds
in this one process, and reports the ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrieval.bundle import OVERFETCH, Bundle  # noqa: E402
from retrieval.chatlog import read_logs  # noqa: E402
from retrieval.pairs import dialogue_pairs  # noqa: E402
from retrieval.ranking import rank_hits  # noqa: E402

K = 5


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--logs", type=Path, required=True)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--compare-reply-dtype", action="store_true")
    parser.add_argument("--rounds", type=int, default=6, help="for --compare-reply-dtype")
    opts = parser.parse_args()

    bundle = Bundle.load(opts.model)
    pairs = dialogue_pairs(read_logs(opts.logs).logs)[: opts.n]
    windows = [p.context for p in pairs]
    messages = [w.split(" [SEP] ")[0].removeprefix("customer: ") for w in windows]
    encode = bundle.encoder.encode
    for text in messages[:20]:  # warm up
        encode([text])

    alone, both, retrieval, analyze = [], [], [], []
    queries = encode(windows)
    for message, window, query in zip(messages, windows, queries, strict=True):
        t0 = time.perf_counter()
        encode([message])
        t1 = time.perf_counter()
        encode([message, window])
        t2 = time.perf_counter()
        hits = bundle.index.search(query[None, :], K * OVERFETCH)[0]
        rank_hits(query, hits, bundle.reply_calibration, K)
        t3 = time.perf_counter()
        bundle.analyze([message], [window])
        t4 = time.perf_counter()
        alone.append(t1 - t0)
        both.append(t2 - t1)
        retrieval.append(t3 - t2)
        analyze.append(t4 - t3)
    result = {
        "model": str(opts.model),
        "indexed_turns": len(bundle.index),
        "index_kind": bundle.index.kind,
        "messages": len(pairs),
        "encoder_message_only": percentiles(alone),
        "encoder_message_and_window": percentiles(both),
        "retrieval_and_ranking": percentiles(retrieval),
        "analyze_total": percentiles(analyze),
    }
    if opts.compare_reply_dtype:
        result["reply_dtype"] = compare_reply_dtype(bundle, queries, opts.rounds)
    print(json.dumps(result, indent=2))
    return 0


def compare_reply_dtype(bundle: Bundle, queries: np.ndarray, rounds: int) -> dict[str, object]:
    """Median per-message search + ranking time with float16 vs float32 reply embeddings."""
    rows = bundle.index._rows  # the benchmark swaps the array under the index on purpose
    held = {"float16": rows.reply_embeddings.astype(np.float16)}
    held["float32"] = held["float16"].astype(np.float32)
    times: dict[str, list[float]] = {name: [] for name in held}
    try:
        for _ in range(rounds):
            for name, array in held.items():
                rows.reply_embeddings = array
                start = time.perf_counter()
                for query in queries:
                    hits = bundle.index.search(query[None, :], K * OVERFETCH)[0]
                    rank_hits(query, hits, bundle.reply_calibration, K)
                times[name].append((time.perf_counter() - start) / len(queries))
    finally:
        rows.reply_embeddings = held["float16"]
    median = {name: float(np.median(t)) * 1000 for name, t in times.items()}
    return {
        "rounds": rounds,
        "float16_ms": round(median["float16"], 3),
        "float32_ms": round(median["float32"], 3),
        "float16_over_float32": round(median["float16"] / median["float32"], 3),
    }


if __name__ == "__main__":
    raise SystemExit(main())
