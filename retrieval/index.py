"""The FAISS index over historical dialogues: customer turns -> the agent replies after them.

Only this module imports faiss. Vectors are unit-length, so inner product = cosine.

Which FAISS structure holds the customer-turn vectors depends on the collection's size:

- ``flat``: exact search. The default (``kind="auto"``) up to ``AUTO_HNSW_THRESHOLD`` live
  vectors, where a single query still takes about a millisecond on 2 cores.
- ``hnsw``: a navigable small-world graph over the full vectors. ``auto`` converts to it when
  an ``add`` crosses the threshold. At 1M 384-d turns: 0.3 ms a query (p99 0.45 ms) at
  recall@10 0.98, 1.8 kB a vector, about 5 minutes to build on 2 cores.
- ``ivfpq``: inverted lists of product-quantised codes, opt-in only, for collections so large
  that memory matters more than recall: ~200 bytes a vector at recall@10 ~0.9. It trains
  on its first ``add``, whose size fixes the number of lists: an index that grows far past
  it scans longer lists (slower queries) and is better rebuilt. Note that the reply
  embeddings kept for every turn (float16: 768 bytes at 384-d) then dominate the memory.

Every kind adds without a rebuild and forgets a conversation on request: its vectors are
overwritten with zeros in FAISS's own storage (HNSW cannot remove a node from its graph,
so there the node stays, zeroed and filtered out of results, until a compaction), its
texts and reply embeddings are dropped, and none of it reaches a saved file.
The tunables' defaults come from ``benchmarks/faiss_scale.py``; BENCHMARKS.md has the figures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, cast, get_args

import faiss
import numpy as np
import numpy.typing as npt

from retrieval.errors import RetrievalError

INDEX_FILE = "index.faiss"
META_FILE = "index_meta.jsonl"
REPLIES_FILE = "reply_embeddings.npy"
REPLY_DTYPE = np.float16
"""How reply embeddings are kept and saved: half the memory of float32, and ranking reads
them back as float32 (a cosine moves by less than 1e-3). Older float32 files still load."""
CONFIG_FILE = "index_config.json"
FORMAT = 2
"""Version of the folder layout; folders without CONFIG_FILE are format 1 (flat only)."""

Kind = Literal["auto", "flat", "hnsw", "ivfpq"]
Structure = Literal["flat", "hnsw", "ivfpq"]

AUTO_HNSW_THRESHOLD = 20_000
"""``auto`` stays exact up to this many live vectors: 384-d, that is 30 MB, which still fits
in a 32 MB L3 cache; p99 1.0 ms a query on 2 cores (0.5 ms at 15k, 2.0 ms at 30k)."""

HNSW_M = 32
"""Graph degree: links per node (twice that on the bottom layer); 256 bytes a vector."""
HNSW_EF_CONSTRUCTION = 128
"""Candidate list while building: a better graph, more slowly. At 1M, 128 builds in ~290 s
and reaches recall@10 0.98 at efSearch 96; 64 builds in ~130 s and reaches 0.95."""
HNSW_EF_SEARCH = 96
"""Candidate list while searching (raised to k when k is larger); the recall/speed knob.
At 1M: 64 -> 0.966 (p99 0.40 ms), 96 -> 0.980 (0.45 ms), 128 -> 0.986 (0.66 ms)."""

IVF_NPROBE = 16
"""Inverted lists scanned per query; the speed knob of ``ivfpq``. Past 16 the PQ codes, not
the lists, bound recall (1M: 0.907 at 16, 0.913 at 64 for twice the time and more)."""
IVF_LISTS_PER_SQRT_N = 4
"""nlist = this * sqrt(n) for the n vectors of the first add (FAISS's 4-16 sqrt(n) advice)."""
IVF_TRAIN_POINTS_PER_CENTROID = 40
"""k-means gets this many points per centroid (FAISS warns under 39), sampled if n is larger."""
IVF_KMEANS_ITERATIONS = 10
PQ_DIMS_PER_SUBQUANTIZER = 2
"""One byte of PQ code per this many dimensions: 192 bytes for 384-d, recall@10 0.91 at 1M
(4 dimensions a byte: 96 bytes, 0.73; 8: 48 bytes, 0.53)."""
PQ_MIN_BITS = 4
IVFPQ_MIN_TRAIN = IVF_TRAIN_POINTS_PER_CENTROID * 2**PQ_MIN_BITS
"""The fewest vectors an ``ivfpq`` index can train on (640)."""

SERIAL_SEARCH_MAX_QUERIES = 16
"""Batches up to this size search on the calling thread alone. Flat search of one query
otherwise starts an OpenMP team whose threads spin-wait for a busy core: at 20k vectors on
2 loaded cores, 5-24 ms a query instead of 0.9 ms. Larger batches use every thread."""

COMPACT_DEAD_FRACTION = 0.25
"""Rebuild (HNSW) or renumber (flat, IVF) once deleted rows exceed this share of all rows."""

Vectors = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]


@dataclass(frozen=True)
class IndexedTurn:
    """One indexed moment: the customer's turn and the agent reply that followed it."""

    conversation_id: str
    turn: int
    context: str
    reply: str
    group: int = -1
    """Near-duplicate reply group; -1 when the reply belongs to none."""
    question: str = ""
    """What the customer asked that the reply answers, where it is not the newest customer
    turn of ``context`` ("" then): after a hand-over, the question before the request for
    a person. Shown on a clarify button."""


def asked_in(context: str) -> str:
    """The newest customer turn of a context window (``retrieval.pairs.context_text``)."""
    for part in context.split(" [SEP] "):
        if part.startswith("customer: "):
            return part.removeprefix("customer: ")
    return ""


@dataclass(frozen=True)
class Hit:
    item: IndexedTurn
    similarity: float
    """Cosine similarity of the query to the indexed customer turn."""
    reply_embedding: npt.NDArray[np.float32]


@dataclass(frozen=True)
class IndexSettings:
    """The requested kind and the tunables; saved with the index and checked when built."""

    kind: Kind = "auto"
    hnsw_m: int = HNSW_M
    ef_construction: int = HNSW_EF_CONSTRUCTION
    ef_search: int = HNSW_EF_SEARCH
    nprobe: int = IVF_NPROBE
    pq_m: int | None = None
    """PQ sub-quantizers (must divide dim); None: dim / PQ_DIMS_PER_SUBQUANTIZER."""

    def check(self, dim: int) -> None:
        if dim <= 0:
            raise RetrievalError(f"index dimension must be positive, got {dim}")
        if self.kind not in get_args(Kind):
            raise RetrievalError(
                f"index kind must be one of {', '.join(get_args(Kind))}; got {self.kind!r}"
            )
        for name in ("hnsw_m", "ef_construction", "ef_search", "nprobe"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise RetrievalError(f"index setting {name} must be a positive int, got {value!r}")
        if self.pq_m is not None and (self.pq_m < 1 or dim % self.pq_m):
            raise RetrievalError(f"pq_m must divide the dimension {dim}, got {self.pq_m}")


def ivfpq_layout(n: int, dim: int, pq_m: int | None) -> tuple[int, int, int]:
    """(nlist, PQ sub-quantizers, bits per code) for an IVF-PQ trained on ``n`` vectors.

    Small ``n`` gets fewer lists and smaller PQ codebooks so that every k-means still has
    IVF_TRAIN_POINTS_PER_CENTROID points per centroid; below IVFPQ_MIN_TRAIN it refuses.
    """
    if n < IVFPQ_MIN_TRAIN:
        raise RetrievalError(
            f"an ivfpq index trains on its first add, which needs at least {IVFPQ_MIN_TRAIN} "
            f"vectors; got {n}. Add more at once, or use kind='flat' or 'hnsw' for a "
            "collection this small"
        )
    per_centroid = IVF_TRAIN_POINTS_PER_CENTROID
    nlist = max(1, min(round(IVF_LISTS_PER_SQRT_N * math.sqrt(n)), n // per_centroid))
    nbits = min(8, int(math.log2(n / per_centroid)))
    if pq_m is None:
        wanted = max(1, dim // PQ_DIMS_PER_SUBQUANTIZER)
        pq_m = max(m for m in range(1, wanted + 1) if dim % m == 0)
    return nlist, pq_m, nbits


class _Rows:
    """Metadata of every row ever added, in parallel arrays; row number = FAISS id.

    No Python object per row except the two texts: at 1M rows the arrays cost ~30 bytes a
    row plus the reply embedding (2 * dim bytes, ``REPLY_DTYPE``). Deleted rows are
    blanked in place and dropped by ``compact``, which renumbers the live rows 0..live-1.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.count = 0  # rows used, live and deleted; the next row number
        self.live_count = 0
        self.conversation_ids: list[str | None] = []  # code -> id; None once forgotten
        self.codes: dict[str, int] = {}  # id -> code, live conversations only
        self.conversation = np.zeros(0, dtype=np.int32)  # (capacity,) code of each row; -1: none
        self.turn = np.zeros(0, dtype=np.int64)
        self.group = np.zeros(0, dtype=np.int64)
        self.live = np.zeros(0, dtype=bool)
        self.reply_embeddings: npt.NDArray[np.float16] = np.zeros((0, dim), dtype=REPLY_DTYPE)
        self.contexts: list[str] = []
        self.replies: list[str] = []
        self.questions: list[str] = []

    def _reserve(self, needed: int) -> None:
        capacity = len(self.live)
        if needed <= capacity:
            return
        capacity = max(needed, capacity + capacity // 2, 1024)
        for name in ("conversation", "turn", "group", "live", "reply_embeddings"):
            old = getattr(self, name)
            new = np.full(
                (capacity, *old.shape[1:]), -1 if name == "conversation" else 0, old.dtype
            )
            new[: self.count] = old[: self.count]
            setattr(self, name, new)

    def append(self, items: Sequence[IndexedTurn], reply_embeddings: Vectors) -> Ids:
        """Store rows for ``items``; returns their row numbers."""
        rows = np.arange(self.count, self.count + len(items), dtype=np.int64)
        self._reserve(self.count + len(items))
        self.contexts.extend([""] * len(items))
        self.replies.extend([""] * len(items))
        self.questions.extend([""] * len(items))
        self.count += len(items)
        self._put(rows, items, reply_embeddings)
        return rows

    def _put(self, rows: Ids, items: Sequence[IndexedTurn], reply_embeddings: Vectors) -> None:
        """Fill reserved rows (N,) with ``items`` and their reply embeddings (N, D)."""
        codes = np.empty(len(items), dtype=np.int32)
        for j, item in enumerate(items):
            code = self.codes.get(item.conversation_id)
            if code is None:
                code = self.codes[item.conversation_id] = len(self.conversation_ids)
                self.conversation_ids.append(item.conversation_id)
            codes[j] = code
        self.conversation[rows] = codes
        self.turn[rows] = [item.turn for item in items]
        self.group[rows] = [item.group for item in items]
        self.live[rows] = True
        self.reply_embeddings[rows] = reply_embeddings
        for row, item in zip(rows.tolist(), items, strict=True):
            self.contexts[row], self.replies[row] = item.context, item.reply
            self.questions[row] = item.question
        self.live_count += len(items)

    def forget(self, conversation_id: str) -> Ids:
        """Blank every row of one conversation; returns their row numbers."""
        code = self.codes.pop(conversation_id, None)
        if code is None:
            return np.zeros(0, dtype=np.int64)
        self.conversation_ids[code] = None
        rows = np.flatnonzero(self.conversation[: self.count] == code).astype(np.int64)
        self.live[rows] = False
        self.conversation[rows] = -1
        self.reply_embeddings[rows] = 0.0
        for row in rows.tolist():
            self.contexts[row] = self.replies[row] = self.questions[row] = ""
        self.turn[rows] = self.group[rows] = 0
        self.live_count -= len(rows)
        return rows

    def conversation_id(self, row: int) -> str:
        conversation_id = self.conversation_ids[int(self.conversation[row])]
        assert conversation_id is not None, f"row {row} is deleted"
        return conversation_id

    def item(self, row: int) -> IndexedTurn:
        return IndexedTurn(
            self.conversation_id(row),
            int(self.turn[row]),
            self.contexts[row],
            self.replies[row],
            int(self.group[row]),
            self.questions[row],
        )

    def compact(self) -> Ids:
        """Drop deleted rows and renumber; returns old row -> new row (-1: deleted)."""
        keep = np.flatnonzero(self.live[: self.count])
        remap = np.full(self.count, -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep), dtype=np.int64)
        used, codes = np.unique(self.conversation[keep], return_inverse=True)
        self.conversation_ids = [self.conversation_ids[int(c)] for c in used]
        self.codes = {
            cid: code for code, cid in enumerate(self.conversation_ids) if cid is not None
        }
        self.conversation = codes.astype(np.int32).reshape(-1)
        self.turn, self.group = self.turn[keep], self.group[keep]
        self.live = np.ones(len(keep), dtype=bool)
        self.reply_embeddings = self.reply_embeddings[keep]
        keep_list = keep.tolist()
        self.contexts = [self.contexts[i] for i in keep_list]
        self.replies = [self.replies[i] for i in keep_list]
        self.questions = [self.questions[i] for i in keep_list]
        self.count = self.live_count = len(keep)
        return remap

    def live_rows(self) -> Ids:
        return np.flatnonzero(self.live[: self.count]).astype(np.int64)

    def save(self, folder: Path) -> None:
        """Live rows only, ascending: one JSON line each and the aligned reply embeddings."""
        rows = self.live_rows()
        columns = zip(
            rows.tolist(),
            self.conversation[rows].tolist(),
            self.turn[rows].tolist(),
            self.group[rows].tolist(),
            strict=True,
        )
        with (folder / META_FILE).open("w", encoding="utf-8") as fh:
            for row, code, turn, group in columns:
                record = {
                    "id": row,
                    "conversation_id": self.conversation_ids[code],
                    "turn": turn,
                    "context": self.contexts[row],
                    "reply": self.replies[row],
                    "group": group,
                }
                if self.questions[row]:
                    record["question"] = self.questions[row]
                fh.write(json.dumps(record) + "\n")
        np.save(folder / REPLIES_FILE, self.reply_embeddings[rows])

    @classmethod
    def load(cls, folder: Path, dim: int, count: int | None) -> _Rows:
        """Rows of a saved folder; ``count`` is the saved next row number (None: format 1)."""
        meta_path, replies_path = folder / META_FILE, folder / REPLIES_FILE
        try:
            lines = meta_path.read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError) as exc:
            raise RetrievalError(f"{meta_path}: cannot read the index metadata: {exc}") from exc
        try:
            replies = np.load(replies_path)
        except (OSError, ValueError) as exc:
            raise RetrievalError(f"{replies_path}: cannot read reply embeddings: {exc}") from exc
        if replies.shape != (len(lines), dim) or replies.dtype not in (np.float16, np.float32):
            raise RetrievalError(
                f"{replies_path}: expected float16 or float32 reply embeddings of shape "
                f"({len(lines)}, {dim}) to match {META_FILE}, got {replies.dtype} {replies.shape}"
            )
        items: list[IndexedTurn] = []
        ids = np.empty(len(lines), dtype=np.int64)
        names = {f.name for f in fields(IndexedTurn)}
        for n, line in enumerate(lines):
            try:
                record = json.loads(line)
                ids[n] = int(record.pop("id"))
                if not set(record) <= names:
                    raise ValueError(f"unknown fields {sorted(set(record) - names)}")
                items.append(IndexedTurn(**record))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise RetrievalError(f"{meta_path}, line {n + 1}: bad row: {exc}") from exc
        if count is None:
            count = int(ids.max()) + 1 if len(ids) else 0
        if len(ids) and (ids.min() < 0 or ids.max() >= count or np.any(np.diff(ids) <= 0)):
            raise RetrievalError(
                f"{meta_path}: row ids must be ascending, unique and below {count}"
            )
        rows = cls(dim)
        rows._reserve(count)
        rows.count = count
        rows.contexts, rows.replies = [""] * count, [""] * count
        rows.questions = [""] * count
        rows._put(ids, items, replies)  # rows between the saved ids stay deleted gaps
        return rows


class DialogueIndex:
    """Customer turns searchable by cosine, each with the agent reply that followed it.

    ``kind`` picks the FAISS structure (see the module docstring); the keywords override
    the tunables. Ids are row numbers of the metadata, stable until a compaction.
    """

    def __init__(
        self,
        dim: int,
        kind: Kind = "auto",
        *,
        hnsw_m: int = HNSW_M,
        ef_construction: int = HNSW_EF_CONSTRUCTION,
        ef_search: int = HNSW_EF_SEARCH,
        nprobe: int = IVF_NPROBE,
        pq_m: int | None = None,
    ) -> None:
        settings = IndexSettings(kind, hnsw_m, ef_construction, ef_search, nprobe, pq_m)
        settings.check(dim)
        self.dim = dim
        self.settings = settings
        self._rows = _Rows(dim)
        self._structure: Structure = "flat" if kind == "auto" else kind
        # None only for an ivfpq index before its first add trains it.
        self._index: Any = None if kind == "ivfpq" else self._empty(self._structure)
        # HNSW only: ids still in the graph whose rows are deleted, and the filter they need.
        self._dead = np.zeros(0, dtype=np.int64)
        self._live_filter: Any = None

    @property
    def kind(self) -> Structure:
        """The FAISS structure in use now: "flat", "hnsw" or "ivfpq"."""
        return self._structure

    def __len__(self) -> int:
        return self._rows.live_count

    def tune(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Change the search-time knobs (HNSW efSearch, IVF nprobe); nothing is rebuilt."""
        settings = replace(
            self.settings,
            ef_search=self.settings.ef_search if ef_search is None else ef_search,
            nprobe=self.settings.nprobe if nprobe is None else nprobe,
        )
        settings.check(self.dim)
        self.settings = settings
        if self._structure == "ivfpq" and self._index is not None:
            self._index.nprobe = settings.nprobe

    def add(
        self,
        items: Sequence[IndexedTurn],
        context_embeddings: npt.NDArray[np.float32],
        reply_embeddings: npt.NDArray[np.float32],
    ) -> None:
        """Add items; embeddings are (N, D) unit vectors aligned with ``items``."""
        n = len(items)
        for name, emb in (("context", context_embeddings), ("reply", reply_embeddings)):
            if emb.shape != (n, self.dim):
                raise RetrievalError(
                    f"{name} embeddings: expected shape ({n}, {self.dim}), got {emb.shape}"
                )
        if n == 0:
            return
        contexts = np.ascontiguousarray(context_embeddings, dtype=np.float32)  # (N, D)
        if self._index is None:  # ivfpq, first add
            self._index = self._trained_ivfpq(contexts)
        ids = self._rows.append(items, reply_embeddings)
        self._index.add_with_ids(contexts, ids)
        if (
            self.settings.kind == "auto"
            and self._structure == "flat"
            and len(self) > AUTO_HNSW_THRESHOLD
        ):
            self._rebuild("hnsw")

    def delete_conversation(self, conversation_id: str) -> int:
        """Forget every turn of one conversation (right to be forgotten); returns how many.

        Its vectors are zeroed in FAISS's storage and its texts and reply embeddings
        dropped at once, so neither memory nor a later ``save`` holds them.
        """
        rows = self._rows.forget(conversation_id)
        if len(rows) == 0:
            return 0
        if self._structure == "ivfpq":
            self._erase_ivf_codes(rows)
            self._index.remove_ids(faiss.IDSelectorBatch(rows))
        else:
            ids, vectors = self._stored()
            vectors[np.isin(ids, rows)] = 0.0  # a view of FAISS's storage
            if self._structure == "flat":
                self._index.remove_ids(faiss.IDSelectorBatch(rows))
            else:  # the graph needs its nodes: keep them, zeroed, filtered out of results
                self._dead = np.union1d(self._dead, rows)
                self._live_filter = None
        if self._rows.count - self._rows.live_count > COMPACT_DEAD_FRACTION * self._rows.count:
            self._compact()
        return len(rows)

    def search(self, queries: npt.NDArray[np.float32], k: int) -> list[list[Hit]]:
        """Nearest customer turns for each query row, best first. (B, D) -> B lists of <= k."""
        sims, found = self.search_rows(queries, k)
        rows = self._rows
        return [
            [
                Hit(rows.item(i), s, rows.reply_embeddings[i].astype(np.float32))
                for s, i in zip(row_sims, row_ids, strict=True)
                if i >= 0
            ]
            for row_sims, row_ids in zip(sims.tolist(), found.tolist(), strict=True)
        ]

    def search_rows(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.float32], Ids]:
        """:meth:`search` as arrays, for batch ranking (no object per hit): (B, k')
        similarities and row numbers, best first, row -1 where there is no live hit."""
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise RetrievalError(f"queries: expected shape (B, {self.dim}), got {queries.shape}")
        if len(self) == 0 or k <= 0:
            empty = np.zeros((queries.shape[0], 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        k = min(k, len(self))
        x = np.ascontiguousarray(queries, dtype=np.float32)
        params = None
        if self._structure == "hnsw":
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # not in stubs
            params.efSearch = max(self.settings.ef_search, k)
            if len(self._dead):
                # A selector, not over-fetching: HNSW still walks through deleted nodes but
                # never returns them, so k live hits come back without guessing a margin.
                params.sel = self._filter()
        with _openmp_threads(1 if len(x) <= SERIAL_SEARCH_MAX_QUERIES else None):
            sims, ids = self._index.search(x, k, params=params)
        live = (ids >= 0) & self._rows.live[np.maximum(ids, 0)]
        return sims.astype(np.float32, copy=False), np.where(live, ids, -1).astype(np.int64)

    def replies(self, rows: Ids) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """The reply embeddings (..., D) and near-duplicate groups (...) of live rows."""
        return self._rows.reply_embeddings[rows].astype(np.float32), self._rows.group[rows]

    def reply_text(self, row: int) -> str:
        return self._rows.replies[row]

    def context_text(self, row: int) -> str:
        return self._rows.contexts[row]

    def question_text(self, row: int) -> str:
        """What the customer asked that the row's reply answers."""
        return self._rows.questions[row] or asked_in(self._rows.contexts[row])

    def conversation_of(self, row: int) -> str:
        return self._rows.conversation_id(row)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if self._index is not None:
            faiss.write_index(self._index, str(folder / INDEX_FILE))
        else:
            (folder / INDEX_FILE).unlink(missing_ok=True)
        self._rows.save(folder)
        config = {
            "format": FORMAT,
            "dim": self.dim,
            "structure": self._structure,
            "trained": self._index is not None,
            "next_id": self._rows.count,
            "settings": asdict(self.settings),
        }
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> DialogueIndex:
        """Load a saved folder; anything missing, corrupt or inconsistent is refused."""
        config_path, index_path = folder / CONFIG_FILE, folder / INDEX_FILE
        if config_path.exists():
            index, count, trained = cls._from_config(config_path)
        else:  # format 1: an exact index, its metadata and reply embeddings
            index, count, trained = None, None, True
        raw: Any = None
        if trained:
            try:
                raw = faiss.read_index(str(index_path))
            except RuntimeError as exc:
                raise RetrievalError(
                    f"cannot load the dialogue index from {folder}: {index_path}: {exc}"
                ) from exc
            if index is None:  # format 1: the index file says the dimension
                index = cls(raw.d)
            found = _structure_of(raw)
            if found != index.kind:
                raise RetrievalError(
                    f"{index_path}: expected a FAISS {index.kind} index, "
                    f"got {found or type(raw).__name__}"
                )
            if raw.d != index.dim:
                raise RetrievalError(f"{index_path}: dimension {raw.d}, config says {index.dim}")
            if found == "ivfpq":
                raw.nprobe = index.settings.nprobe
        assert index is not None  # format 1 always has an index file
        index._rows = _Rows.load(folder, index.dim, count)
        index._index = raw
        index._check_ids(index_path)
        return index

    @classmethod
    def _from_config(cls, path: Path) -> tuple[DialogueIndex, int, bool]:
        """(an empty index with the saved settings and structure, next row id, trained)."""
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
            if config["format"] != FORMAT:
                raise ValueError(f"expected format {FORMAT}, got {config['format']!r}")
            index = cls(int(config["dim"]), **config["settings"])
            structure = config["structure"]
            if structure not in get_args(Structure):
                raise ValueError(f"unknown structure {structure!r}")
            index._structure = structure
            return index, int(config["next_id"]), bool(config["trained"])
        except (OSError, ValueError, KeyError, TypeError, RetrievalError) as exc:
            raise RetrievalError(f"{path}: bad index config: {exc}") from exc

    # -- FAISS structures ---------------------------------------------------------------

    def _empty(self, structure: Structure) -> Any:
        if structure == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        if structure == "hnsw":
            graph = faiss.IndexHNSWFlat(self.dim, self.settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = self.settings.ef_construction
            graph.hnsw.efSearch = self.settings.ef_search
            return faiss.IndexIDMap2(graph)
        raise AssertionError("an ivfpq index is built by _trained_ivfpq")

    def _trained_ivfpq(self, vectors: Vectors) -> Any:
        """An empty IVF-PQ trained on (a sample of) the vectors of the first add. (N, D)"""
        nlist, pq_m, nbits = ivfpq_layout(len(vectors), self.dim, self.settings.pq_m)
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFPQ(
            quantizer, self.dim, nlist, pq_m, nbits, faiss.METRIC_INNER_PRODUCT
        )
        index.cp.niter = IVF_KMEANS_ITERATIONS
        sample = IVF_TRAIN_POINTS_PER_CENTROID * max(nlist, 2**nbits)
        if len(vectors) > sample:  # a fixed seed: the same data trains the same index
            chosen = np.random.default_rng(0).choice(len(vectors), sample, replace=False)
            vectors = vectors[np.sort(chosen)]
        index.train(vectors)
        index.nprobe = self.settings.nprobe
        return index

    def _stored(self) -> tuple[Ids, Vectors]:
        """Flat and HNSW: (ids (N,), a writable view of FAISS's vectors (N, D))."""
        inner = faiss.downcast_index(self._index.index)
        storage: Any = (
            inner if self._structure == "flat" else faiss.downcast_index(cast(Any, inner).storage)
        )
        n = self._index.ntotal
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        vectors = faiss.rev_swig_ptr(storage.get_xb(), n * self.dim).reshape(n, self.dim)
        return ids, vectors

    def _ivf_lists(self) -> list[tuple[Ids, npt.NDArray[np.uint8]]]:
        """IVF-PQ: (ids (L,), writable codes (L, code_size)) of every non-empty list."""
        invlists = self._index.invlists
        lists = []
        for list_no in range(invlists.nlist):
            size = invlists.list_size(list_no)
            if size:
                ids = faiss.rev_swig_ptr(invlists.get_ids(list_no), size)
                codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * invlists.code_size)
                lists.append((ids, codes.reshape(size, invlists.code_size)))
        return lists

    def _erase_ivf_codes(self, rows: Ids) -> None:
        # remove_ids moves the last code of a list into the gap but never clears the slot
        # it vacates, so a removed code could linger in memory: zero it first.
        for ids, codes in self._ivf_lists():
            codes[np.isin(ids, rows)] = 0

    def _filter(self) -> Any:
        """HNSW: a selector of the live ids, cached until the next delete or rebuild."""
        if self._live_filter is None:
            dead = faiss.IDSelectorBatch(self._dead)
            self._live_filter = (faiss.IDSelectorNot(dead), dead)  # the Not borrows `dead`
        return self._live_filter[0]

    def _rebuild(self, structure: Structure, remap: Ids | None = None) -> None:
        """Flat or HNSW from the live stored vectors, with ids renumbered by ``remap``."""
        ids, vectors = self._stored()
        live = self._rows.live[ids] if remap is None else remap[ids] >= 0
        ids = ids[live] if remap is None else remap[ids[live]]
        vectors = np.ascontiguousarray(vectors[live])
        index = self._empty(structure)
        index.add_with_ids(vectors, ids)
        self._index, self._structure = index, structure
        self._dead, self._live_filter = np.zeros(0, dtype=np.int64), None

    def _compact(self) -> None:
        """Drop deleted rows from the metadata and renumber FAISS's ids to match."""
        remap = self._rows.compact()
        if self._structure == "hnsw":
            small = self.settings.kind == "auto" and len(self) <= AUTO_HNSW_THRESHOLD
            self._rebuild("flat" if small else "hnsw", remap)
        elif self._structure == "flat":
            id_map = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            faiss.copy_array_to_vector(remap[id_map], self._index.id_map)
            self._index.construct_rev_map()
        else:
            for ids, _ in self._ivf_lists():
                ids[:] = remap[ids]

    def _check_ids(self, index_path: Path) -> None:
        """The ids in FAISS must be the live rows (HNSW: plus deleted, zeroed nodes)."""
        if self._index is None:
            stored = np.zeros(0, dtype=np.int64)
        elif self._structure == "ivfpq":
            lists = self._ivf_lists()
            stored = np.concatenate([ids for ids, _ in lists]) if lists else np.zeros(0, np.int64)
        else:
            stored = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        live = self._rows.live_rows()
        in_range = stored[(stored >= 0) & (stored < self._rows.count)]
        extra = np.setdiff1d(stored, live)
        if (
            len(in_range) != len(stored)
            or len(np.unique(stored)) != len(stored)
            or len(np.setdiff1d(live, stored))
            or (self._structure != "hnsw" and len(extra))
        ):
            raise RetrievalError(
                f"{index_path}: holds {len(stored)} vectors whose ids do not match the "
                f"{len(live)} rows of {META_FILE}; rebuild it with `frontdesk train`"
            )
        if self._structure == "hnsw":
            self._dead = extra
            _, vectors = self._stored()
            if len(extra) and np.any(vectors[np.isin(stored, extra)]):
                raise RetrievalError(f"{index_path}: holds vectors of deleted rows")


@contextmanager
def _openmp_threads(threads: int | None) -> Iterator[None]:
    """Run FAISS with ``threads`` OpenMP threads (None: unchanged), then restore the setting.

    The setting is the calling thread's own, so other threads' searches are unaffected.
    """
    if threads is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _structure_of(index: Any) -> Structure | None:
    """Which of our structures a FAISS index read from disk is, if any."""
    if isinstance(index, faiss.IndexIVFPQ) and index.metric_type == faiss.METRIC_INNER_PRODUCT:
        return "ivfpq"
    if not isinstance(index, faiss.IndexIDMap2):
        return None
    inner = faiss.downcast_index(index.index)
    if inner.metric_type != faiss.METRIC_INNER_PRODUCT:
        return None
    if isinstance(inner, faiss.IndexHNSWFlat):
        return "hnsw"
    if type(inner) in (faiss.IndexFlat, faiss.IndexFlatIP):
        return "flat"
    return None
