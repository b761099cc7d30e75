"""The FAISS dialogue index: add, search, delete by conversation, save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval.errors import RetrievalError
from retrieval.index import DialogueIndex, IndexedTurn
from retrieval.scoring import normalize

DIM = 8


def vectors(n: int, seed: int) -> np.ndarray:
    return normalize(np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32))


def turns(conversation: str, n: int) -> list[IndexedTurn]:
    return [
        IndexedTurn(conversation, i, f"{conversation} q{i}", f"{conversation} a{i}")
        for i in range(n)
    ]


def test_search_finds_the_exact_vector_first() -> None:
    """A stored vector is its own nearest neighbour, with similarity 1."""
    index = DialogueIndex(DIM)
    ctx, rep = vectors(5, 0), vectors(5, 1)
    index.add(turns("a", 5), ctx, rep)
    hits = index.search(ctx[[3]], k=3)[0]
    assert hits[0].item == IndexedTurn("a", 3, "a q3", "a a3")
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(hits[0].reply_embedding, rep[3])
    assert len(hits) == 3


def test_incremental_add_and_delete_by_conversation(tmp_path: Path) -> None:
    """Adding keeps earlier items; deleting a conversation removes all and only its turns."""
    index = DialogueIndex(DIM)
    index.add(turns("a", 3), vectors(3, 0), vectors(3, 1))
    index.add(turns("b", 2), vectors(2, 2), vectors(2, 3))
    assert len(index) == 5
    assert index.delete_conversation("a") == 3
    assert index.delete_conversation("a") == 0
    assert len(index) == 2
    hits = index.search(vectors(4, 9), k=10)
    assert all(h.item.conversation_id == "b" for row in hits for h in row)
    # ids stay unique after a delete: new items do not overwrite old ones
    index.add(turns("c", 1), vectors(1, 4), vectors(1, 5))
    assert {h.item.conversation_id for h in index.search(vectors(1, 4), k=10)[0]} == {"b", "c"}


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    """A saved index loads with the same items, search results and deletions."""
    index = DialogueIndex(DIM)
    ctx = vectors(6, 0)
    index.add(turns("a", 3) + turns("b", 3), ctx, vectors(6, 1))
    index.delete_conversation("b")
    index.save(tmp_path / "idx")
    loaded = DialogueIndex.load(tmp_path / "idx")
    assert len(loaded) == 3
    before = [h.item for h in index.search(ctx[:2], k=3)[0]]
    after = [h.item for h in loaded.search(ctx[:2], k=3)[0]]
    assert before == after
    loaded.add(turns("z", 1), vectors(1, 7), vectors(1, 8))
    assert len(loaded) == 4


def test_empty_index_returns_no_hits() -> None:
    """Searching an empty index is not an error."""
    assert DialogueIndex(DIM).search(vectors(2, 0), k=5) == [[], []]


def test_wrong_shapes_are_refused() -> None:
    """Embeddings that do not match the items or the dimension are refused with the shapes."""
    with pytest.raises(RetrievalError, match=r"expected shape \(2, 8\)"):
        DialogueIndex(DIM).add(turns("a", 2), vectors(3, 0), vectors(2, 0))


def test_loading_a_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    """A folder without an index raises RetrievalError naming the folder."""
    with pytest.raises(RetrievalError, match=str(tmp_path)):
        DialogueIndex.load(tmp_path)
