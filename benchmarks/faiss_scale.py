"""The dialogue index at scale: build time, memory, single-query latency and recall@10.

Builds ``retrieval.index.DialogueIndex`` of each kind over N stored turns (384-d) and sweeps
the search knob (HNSW efSearch, IVF nprobe), timing one query at a time through the public
``search`` (k=10, so Python's share of the cost is included) with FAISS on one OpenMP
thread; builds use every core. Recall@10 is against exact search (IndexFlatIP) on the
same vectors. A separate sweep times exact search at small sizes, to place ``auto``'s
flat -> HNSW threshold. Prints one JSON object (and writes it to ``--out``).

    python benchmarks/faiss_scale.py [--n 1000000] [--queries 1000] [--kinds flat,hnsw,ivfpq]
        [--ef-search 16,32,...] [--nprobe 8,16,...] [--flat-sizes 10000,20000,...]
        [--ivfpq-sizes 3000000] [--out FILE]

Data. Random Gaussian vectors are far harder for approximate search than sentence
embeddings (no low-dimensional structure), so the vectors imitate MiniLM embeddings:

1. Centres are real all-MiniLM-L6-v2 embeddings of the ~13k distinct Banking77 texts
   (train + test; encoded once, cached under ``--cache``). A seeded shuffle holds out
   ``--queries`` of them (at most 1000) as query centres; the rest are stored centres.
2. Noise has the covariance of the real embeddings (their PCA): a paraphrase moves along
   the directions real sentences vary in, not uniformly in all 384.
3. A stored turn is ``normalize(c + s * noise)`` for a stored centre c drawn with
   log-normal popularity (a few frequent questions, a long tail) and a spread s uniform in
   [0.3, 0.8] per centre: cosine to its centre ~0.8-0.95, like paraphrases.
4. A query is the same perturbation of a held-out centre, so no query is a stored point
   and its neighbours are paraphrases of nearby questions, as for a new customer message.

Everything derives from ``--seed``.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from retrieval.index import DialogueIndex

ROOT = Path(__file__).resolve().parents[1]

Array = npt.NDArray[np.float32]
Result = dict[str, Any]
K = 10
CHUNK = 100_000


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def normalize(x: Array) -> Array:
    out: Array = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


# -- data -------------------------------------------------------------------------------


def real_embeddings(data: Path, cache: Path) -> Array:
    """MiniLM embeddings of the distinct Banking77 texts (N, 384), cached."""
    path = cache / "banking77_minilm.npy"
    if path.exists():
        cached: Array = np.load(path)
        return cached
    texts: list[str] = []
    for name in ("train.csv", "test.csv"):
        with (data / name).open(encoding="utf-8", newline="") as fh:
            texts.extend(row["text"].strip() for row in csv.DictReader(fh))
    texts = list(dict.fromkeys(t for t in texts if t))
    log(f"encoding {len(texts)} Banking77 texts with MiniLM (once; cached at {path})")
    from retrieval.encoder import Encoder, base_model_path

    embeddings = Encoder(base_model_path()).encode(texts)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, embeddings)
    return embeddings


class Generator:
    """Paraphrase-like perturbations of real embeddings (see the module docstring)."""

    def __init__(self, real: Array, n_queries: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(real))
        held = min(n_queries, 1000)
        self.query_centres, self.centres = real[order[:held]], real[order[held:]]
        centred = real - real.mean(axis=0)
        eigvals, eigvecs = np.linalg.eigh(centred.T @ centred / len(real))
        self.mixing = (eigvecs * np.sqrt(np.clip(eigvals, 0, None))).T.astype(np.float32)
        popularity = rng.lognormal(0.0, 1.0, len(self.centres))
        self.popularity = popularity / popularity.sum()
        self.spread = rng.uniform(0.3, 0.8, len(self.centres)).astype(np.float32)
        self.seed = seed

    def _perturb(self, centres: Array, spread: Array, rng: np.random.Generator) -> Array:
        noise = rng.standard_normal((len(centres), centres.shape[1]), dtype=np.float32)
        return normalize(centres + spread[:, None] * (noise @ self.mixing))  # (B, D)

    def queries(self, n: int) -> Array:
        rng = np.random.default_rng([self.seed, 1])
        pick = np.arange(n) % len(self.query_centres)
        spread = rng.uniform(0.3, 0.8, n).astype(np.float32)
        return self._perturb(self.query_centres[pick], spread, rng)

    def points(self, n: int, part: int = 0) -> Iterator[Array]:
        """``n`` stored turns in chunks; ``part`` seeds an independent further batch."""
        rng = np.random.default_rng([self.seed, 2, part])
        for start in range(0, n, CHUNK):
            size = min(CHUNK, n - start)
            which = rng.choice(len(self.centres), size, p=self.popularity)
            yield self._perturb(self.centres[which], self.spread[which], rng)


def chunks(points: Array) -> Iterator[Array]:
    for start in range(0, len(points), CHUNK):
        yield points[start : start + CHUNK]


def exact_top_k(points: Iterator[Array], queries: Array, k: int) -> npt.NDArray[np.int64]:
    """Exact top-k ids of each query over all chunks of ``points``. (Q, k)"""
    best_sims = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.full((len(queries), k), -1, dtype=np.int64)
    offset = 0
    for chunk in points:
        sims = queries @ chunk.T  # (Q, C)
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        merged_sims = np.concatenate([best_sims, np.take_along_axis(sims, top, 1)], axis=1)
        merged_ids = np.concatenate([best_ids, top + offset], axis=1)
        order = np.argsort(-merged_sims, axis=1)[:, :k]
        best_sims = np.take_along_axis(merged_sims, order, 1)
        best_ids = np.take_along_axis(merged_ids, order, 1)
        offset += len(chunk)
    return best_ids


# -- measuring --------------------------------------------------------------------------


def build(
    kind: str,
    points: Array,
    *,
    first_id: int = 0,
    index: DialogueIndex | None = None,
    tunables: dict[str, int] | None = None,
) -> DialogueIndex:
    """Add ``points`` as turns (turn = global point number) to a new or given index."""
    from retrieval.index import DialogueIndex, IndexedTurn

    if index is None:
        index = DialogueIndex(points.shape[1], kind, **(tunables or {}))  # type: ignore[arg-type]  # str kind
    items = [
        IndexedTurn(f"conv{i // 8}", i, f"customer turn {i}", f"agent reply {i}")
        for i in range(first_id, first_id + len(points))
    ]
    index.add(items, points, points)  # the reply side is not searched: reuse the vectors
    return index


def latency_and_recall(
    index: DialogueIndex, queries: Array, truth: npt.NDArray[np.int64]
) -> Result:
    """Single-query search times and recall@K over every query."""
    import faiss

    faiss.omp_set_num_threads(1)
    for q in queries[:20]:  # warm caches
        index.search(q[None], K)
    times: list[float] = []
    recall: list[float] = []
    for q, true in zip(queries, truth, strict=True):
        start = time.perf_counter()
        hits = index.search(q[None], K)[0]
        times.append(time.perf_counter() - start)
        recall.append(len({h.item.turn for h in hits} & set(true.tolist())) / K)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    ms = np.asarray(times) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "recall_at_10": round(float(np.mean(recall)), 4),
        "queries": len(queries),
    }


def footprint(index: DialogueIndex, baseline_rss: int, folder: Path) -> Result:
    """Bytes of the FAISS structure, of the whole saved folder, and RSS growth; save/load s."""
    from retrieval.index import INDEX_FILE, DialogueIndex

    gc.collect()
    rss = rss_bytes() - baseline_rss
    start = time.perf_counter()
    index.save(folder)
    saved = time.perf_counter() - start
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    start = time.perf_counter()
    loaded = DialogueIndex.load(folder)
    load_s = time.perf_counter() - start
    assert len(loaded) == len(index)
    del loaded
    n = len(index)
    return {
        "index_mb": round(files[INDEX_FILE] / 2**20, 1),
        "index_bytes_per_vector": round(files[INDEX_FILE] / n, 1),
        "folder_mb": round(sum(files.values()) / 2**20, 1),
        "rss_delta_mb": round(rss / 2**20, 1),
        "rss_bytes_per_turn": round(rss / n, 1),
        "save_s": round(saved, 1),
        "load_s": round(load_s, 1),
    }


def run_kind(
    kind: str,
    points: Array,
    queries: Array,
    truth: npt.NDArray[np.int64],
    args: argparse.Namespace,
    work: Path,
) -> Result:
    tunables: dict[str, int] = {}
    if kind == "hnsw":
        tunables = {"hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction}
    if kind == "ivfpq" and args.pq_m:
        tunables = {"pq_m": args.pq_m}
    gc.collect()
    baseline = rss_bytes()
    log(f"{kind}: building over {len(points)} turns {tunables}")
    start = time.perf_counter()
    index = build(kind, points, tunables=tunables)
    result: Result = {"kind": kind, "tunables": tunables}
    result["build_s"] = round(time.perf_counter() - start, 1)
    log(f"{kind}: built in {result['build_s']} s; saving and loading")
    result.update(footprint(index, baseline, work / kind))
    if kind == "ivfpq":
        faiss_index = index._index  # benchmark-only peek at the trained layout
        result["nlist"] = faiss_index.nlist
        result["code_bytes"] = faiss_index.code_size
    sweep: list[Result] = []
    if kind == "flat":
        count = min(len(queries), args.flat_queries)
        sweep.append(latency_and_recall(index, queries[:count], truth[:count]))
    else:
        name = "ef_search" if kind == "hnsw" else "nprobe"
        for value in args.ef_search if kind == "hnsw" else args.nprobe:
            index.tune(**{name: value})
            point = {name: value, **latency_and_recall(index, queries, truth)}
            log(f"{kind}: {point}")
            sweep.append(point)
    result["sweep"] = sweep
    del index
    gc.collect()
    return result


def flat_sizes(gen: Generator, sizes: list[int], queries: Array) -> list[Result]:
    """Exact search latency at small sizes: where ``auto`` should leave flat."""
    out = []
    for size in sizes:
        points = np.concatenate(list(gen.points(size, part=1)))
        truth = exact_top_k(chunks(points), queries, K)
        index = build("flat", points)
        point = {"n": size, **latency_and_recall(index, queries, truth)}
        log(f"flat at {size}: {point}")
        out.append(point)
    return out


def ivfpq_at(gen: Generator, size: int, queries: Array, nprobe: int, work: Path) -> Result:
    """IVF-PQ over ``size`` turns added in chunks (the first trains it); memory and recall."""
    gc.collect()
    baseline = rss_bytes()
    first = 1_000_000
    start = time.perf_counter()
    index: DialogueIndex | None = None
    added, pending = 0, []
    for chunk in gen.points(size, part=2):
        pending.append(chunk)
        if index is None and sum(len(c) for c in pending) < min(first, size):
            continue
        batch = np.concatenate(pending)
        pending = []
        index = build("ivfpq", batch, first_id=added, index=index)
        added += len(batch)
        log(f"ivfpq at {size}: {added} added")
    build_s = time.perf_counter() - start
    assert index is not None
    truth = exact_top_k(gen.points(size, part=2), queries, K)
    result: Result = {"n": size, "build_s": round(build_s, 1)}
    result.update(footprint(index, baseline, work / f"ivfpq-{size}"))
    index.tune(nprobe=nprobe)
    result.update({"nprobe": nprobe, **latency_and_recall(index, queries, truth)})
    return result


def main(argv: list[str] | None = None) -> Result:
    from retrieval import index as index_module

    ints = lambda text: [int(v) for v in text.split(",") if v]  # noqa: E731
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--kinds", default="flat,hnsw,ivfpq")
    parser.add_argument("--ef-search", type=ints, default=[16, 24, 32, 48, 64, 96, 128])
    parser.add_argument("--nprobe", type=ints, default=[8, 16, 32, 64, 128])
    parser.add_argument("--hnsw-m", type=int, default=index_module.HNSW_M)
    parser.add_argument("--ef-construction", type=int, default=index_module.HNSW_EF_CONSTRUCTION)
    parser.add_argument("--pq-m", type=int, default=0, help="0: the module's default")
    parser.add_argument("--flat-queries", type=int, default=200, help="flat at --n is slow")
    parser.add_argument("--flat-sizes", type=ints, default=[])
    parser.add_argument("--ivfpq-sizes", type=ints, default=[])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/banking77")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "faiss_scale")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    import faiss

    report: Result = {
        "n": args.n,
        "dim": None,
        "cpus": os.cpu_count(),
        "faiss": faiss.__version__,
        "query_threads": 1,
    }
    gen = Generator(real_embeddings(args.data, args.cache), args.queries, args.seed)
    queries = gen.queries(args.queries)
    report["dim"] = queries.shape[1]
    with tempfile.TemporaryDirectory(dir=args.cache) as tmp:
        work = Path(tmp)
        if args.flat_sizes:
            report["flat_sizes"] = flat_sizes(gen, args.flat_sizes, queries)
        kinds = [k for k in args.kinds.split(",") if k]
        if kinds:
            log(f"generating {args.n} turns")
            points = np.concatenate(list(gen.points(args.n)))
            start = time.perf_counter()
            truth = exact_top_k(chunks(points), queries, K)
            report["exact_batch_s"] = round(time.perf_counter() - start, 1)
            report["kinds"] = [run_kind(k, points, queries, truth, args, work) for k in kinds]
            del points
        nprobe = index_module.IVF_NPROBE
        report["ivfpq_sizes"] = [
            ivfpq_at(gen, size, queries, nprobe, work) for size in args.ivfpq_sizes
        ]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
