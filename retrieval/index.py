"""The FAISS index over historical dialogues: customer turns -> the agent replies after them.

Only this module imports faiss. Vectors are unit-length, so inner product = cosine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

from retrieval.errors import RetrievalError

INDEX_FILE = "index.faiss"
META_FILE = "index_meta.jsonl"
REPLIES_FILE = "reply_embeddings.npy"


@dataclass(frozen=True)
class IndexedTurn:
    """One indexed moment: the customer's turn and the agent reply that followed it."""

    conversation_id: str
    turn: int
    context: str
    reply: str


@dataclass(frozen=True)
class Hit:
    item: IndexedTurn
    similarity: float
    """Cosine similarity of the query to the indexed customer turn."""
    reply_embedding: npt.NDArray[np.float32]


class DialogueIndex:
    """Exact inner-product search with ids, so items can be added and deleted in place."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._items: dict[int, IndexedTurn] = {}
        self._replies: dict[int, npt.NDArray[np.float32]] = {}
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._items)

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
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._index.add_with_ids(np.ascontiguousarray(context_embeddings, dtype=np.float32), ids)
        for i, item, reply in zip(ids.tolist(), items, reply_embeddings, strict=True):
            self._items[i] = item
            self._replies[i] = reply.astype(np.float32)
        self._next_id += n

    def delete_conversation(self, conversation_id: str) -> int:
        """Remove every turn of one conversation (right to be forgotten); returns how many."""
        ids = [i for i, item in self._items.items() if item.conversation_id == conversation_id]
        if ids:
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))  # type: ignore[arg-type]
            for i in ids:
                del self._items[i]
                del self._replies[i]
        return len(ids)

    def search(self, queries: npt.NDArray[np.float32], k: int) -> list[list[Hit]]:
        """Nearest customer turns for each query row. (B, D) -> B lists of <= k hits."""
        if len(self) == 0 or k <= 0:
            return [[] for _ in range(queries.shape[0])]
        sims, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        results: list[list[Hit]] = []
        for row_sims, row_ids in zip(sims, ids, strict=True):
            hits = [
                Hit(self._items[int(i)], float(s), self._replies[int(i)])
                for s, i in zip(row_sims, row_ids, strict=True)
                if i >= 0
            ]
            results.append(hits)
        return results

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(folder / INDEX_FILE))
        ids = sorted(self._items)
        with (folder / META_FILE).open("w", encoding="utf-8") as fh:
            for i in ids:
                fh.write(json.dumps({"id": i, **asdict(self._items[i])}) + "\n")
        replies = np.stack([self._replies[i] for i in ids]) if ids else np.zeros((0, self.dim))
        np.save(folder / REPLIES_FILE, replies.astype(np.float32))

    @classmethod
    def load(cls, folder: Path) -> DialogueIndex:
        try:
            raw = faiss.read_index(str(folder / INDEX_FILE))
            lines = (folder / META_FILE).read_text(encoding="utf-8").splitlines()
            replies = np.load(folder / REPLIES_FILE)
        except (OSError, RuntimeError, ValueError) as exc:
            raise RetrievalError(f"cannot load the dialogue index from {folder}: {exc}") from exc
        index = cls(raw.d)
        if not isinstance(raw, faiss.IndexIDMap2):
            raise RetrievalError(
                f"{folder / INDEX_FILE}: expected an IndexIDMap2, got {type(raw).__name__}"
            )
        index._index = raw
        for row, line in enumerate(lines):
            record = json.loads(line)
            i = int(record.pop("id"))
            index._items[i] = IndexedTurn(**record)
            index._replies[i] = replies[row]
            index._next_id = max(index._next_id, i + 1)
        if index._index.ntotal != len(index._items):
            raise RetrievalError(
                f"{folder}: index holds {index._index.ntotal} vectors but metadata has "
                f"{len(index._items)} rows; rebuild it with `frontdesk train`"
            )
        return index
