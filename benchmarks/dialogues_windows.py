"""How the served context window changes STAR ranking: joint windows cut to fewer tokens,
and late fusion (each turn encoded alone, then summed), on a `dialogues index` bundle.

Served scoring throughout (`training.dialogue_eval.score_cases_with_index`, depth 20, the
bundle's calibration). Joint: the window text as serving encodes it, cut to ``--tokens``.
Late fusion (``retrieval.context``, ``fused``): each turn of a window is embedded alone,
without its role (serving caches the turns it has seen and encodes only the new message),
and the window is the normalised sum with weights 1, d, d^2 (most recent first) for each
``--fusion-decays`` d; the index's context embeddings are rebuilt the same way and the
calibration refitted on held-out training conversations, as `dialogues index` does. On a
bundle trained ``--context fused`` this measures other decays than the trained one.

    .venv/bin/python benchmarks/dialogues_windows.py --model /tmp/star/tuned
        --train /tmp/star/train.jsonl --test /tmp/star/test.jsonl
        [--tokens 32,48,64] [--fusion-decays 0.5]

(`benchmarks/dialogues_star.py --keep /tmp/star` writes those three.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrieval import bundle as bundle_files  # noqa: E402
from retrieval.bundle import Bundle  # noqa: E402
from retrieval.chatlog import read_logs  # noqa: E402
from retrieval.context import ContextEncoding  # noqa: E402
from retrieval.index import DialogueIndex  # noqa: E402
from retrieval.pairs import dialogue_pairs  # noqa: E402
from retrieval.ranking import ReplyCalibration  # noqa: E402
from training.dialogue_eval import (  # noqa: E402
    ranking_cases,
    ranking_metrics,
    ranks,
    score_cases_with_index,
)
from training.dialogue_model import SERVED_K, redaction_of  # noqa: E402
from training.pipeline import build_index  # noqa: E402
from training.ranker import RankerArguments, split_conversations  # noqa: E402
from training.reply_calibration import fit_reply_calibration  # noqa: E402

Vectors = npt.NDArray[np.float32]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--tokens", default="32,48,64")
    parser.add_argument("--fusion-decays", default="0.5")
    opts = parser.parse_args()

    bundle = Bundle.load(opts.model)
    redact = redaction_of(bundle)
    cases = ranking_cases(read_logs(opts.test).logs, redact=redact)
    depth = SERVED_K * bundle_files.OVERFETCH
    results: list[dict[str, object]] = []

    def run(
        label: str,
        contexts: Callable[[Sequence[str]], Vectors],
        index: DialogueIndex,
        calibration: ReplyCalibration,
    ) -> None:
        started = time.perf_counter()
        scores = score_cases_with_index(
            cases, bundle.encoder.encode, index, calibration, depth=depth, encode_contexts=contexts
        )
        row: dict[str, object] = {"window": label, **ranking_metrics(ranks(scores))}
        row["seconds"] = round(time.perf_counter() - started, 1)
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    for tokens in [int(t) for t in opts.tokens.split(",") if t.strip()]:
        encode = partial(bundle.encoder.encode, max_tokens=tokens)
        run(f"joint, first {tokens} tokens", encode, bundle.index, bundle.reply_calibration)

    decays = [float(d) for d in opts.fusion_decays.split(",") if d.strip()]
    if decays:
        train = read_logs(opts.train).logs
        pairs = dialogue_pairs(train, redact=redact)
        args = RankerArguments()
        _, held_out = split_conversations(train, args.valid_fraction, args.seed)
        for decay in decays:
            fused = ContextEncoding("fused", (1.0, decay, decay * decay))
            encoder = bundle.encoder
            index = build_index(encoder, pairs, context=fused)  # type: ignore[arg-type]
            held = {h.id for h in held_out}
            calibration = fit_reply_calibration(encoder, index, pairs, held, fused)
            run(
                f"late fusion, decay {decay}",
                partial(fused.encode, encoder.encode),
                index,
                calibration,
            )

    print(json.dumps({"model": str(opts.model), "cases": len(cases), "rows": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
