"""How the served context window changes STAR ranking: joint windows cut to fewer tokens,
and late fusion (each turn encoded alone, then summed), on a `dialogues index` bundle.

Served scoring throughout (`training.dialogue_eval.score_cases_with_index`, depth 20, the
bundle's calibration). Joint: the window text as serving encodes it, cut to ``--tokens``.
Late fusion: each turn of a window is embedded alone (so serving could cache the turns it
has seen and encode only the new message), and the window is the normalised sum with weights
1, d, d^2 ... (most recent first) for each ``--fusion-decays`` d; the index's context
embeddings are rebuilt the same way and the calibration refitted on held-out training
conversations, as `dialogues index` does.

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
from retrieval.index import DialogueIndex  # noqa: E402
from retrieval.pairs import SEPARATOR, dialogue_pairs  # noqa: E402
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


class LateFusion:
    """Encodes a window as the weighted sum of its turns' embeddings, each turn once."""

    def __init__(self, bundle: Bundle, decay: float) -> None:
        self.encoder = bundle.encoder
        self.decay = decay
        self.dim = bundle.encoder.dim
        self.cache: dict[str, Vectors] = {}

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, max_tokens: int | None = None
    ) -> Vectors:
        turns = [text.split(SEPARATOR) for text in texts]
        new = sorted({t for window in turns for t in window if t not in self.cache})
        if new:
            self.cache.update(zip(new, self.encoder.encode(new), strict=True))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, window in enumerate(turns):
            total = sum(self.decay**j * self.cache[t] for j, t in enumerate(window))
            out[row] = total / np.linalg.norm(total)
        return out


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
            fusion = LateFusion(bundle, decay)
            index = build_index(fusion, pairs)  # type: ignore[arg-type]  # encode() is all it uses
            calibration = fit_reply_calibration(fusion, index, pairs, {h.id for h in held_out})
            run(f"late fusion, decay {decay}", fusion.encode, index, calibration)

    print(json.dumps({"model": str(opts.model), "cases": len(cases), "rows": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
