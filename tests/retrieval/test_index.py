"""The FAISS dialogue index: every kind adds, searches, forgets, saves and loads."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from retrieval import index as index_module
from retrieval.errors import RetrievalError
from retrieval.index import (
    CONFIG_FILE,
    INDEX_FILE,
    META_FILE,
    REPLIES_FILE,
    DialogueIndex,
    IndexedTurn,
    Kind,
    ivfpq_layout,
)
from retrieval.scoring import normalize

DIM = 8
KINDS = ["flat", "hnsw", "ivfpq"]
TURNS = 8  # turns per conversation
N = 1000  # enough for ivfpq to train (IVFPQ_MIN_TRAIN is 640)


@pytest.fixture(autouse=True, scope="module")
def one_faiss_thread() -> Iterator[None]:
    """Tiny indexes gain nothing from OpenMP, and its threads spin when the cores are busy
    (a loaded machine made this file 5x slower); one thread keeps it at ~3 s."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def vectors(n: int, seed: int) -> np.ndarray:
    return normalize(np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32))


def turns(conversation: str, n: int) -> list[IndexedTurn]:
    return [
        IndexedTurn(conversation, i, f"{conversation} q{i}", f"{conversation} a{i}")
        for i in range(n)
    ]


def conversations(first: int, count: int) -> list[IndexedTurn]:
    """``count`` conversations of TURNS turns; the group is the turn number."""
    return [
        IndexedTurn(f"c{c}", t, f"c{c} q{t}", f"c{c} a{t}", group=t)
        for c in range(first, first + count)
        for t in range(TURNS)
    ]


def new_index(kind: Kind) -> DialogueIndex:
    # ivfpq: one PQ byte per dimension and every list probed, so tests can ask for near-exact
    # results; the approximation itself is measured in benchmarks/faiss_scale.py.
    return DialogueIndex(DIM, kind, pq_m=DIM, nprobe=1000)


def filled(kind: Kind) -> tuple[DialogueIndex, np.ndarray, np.ndarray]:
    """An index of N turns (N / TURNS conversations) and its context and reply vectors."""
    index = new_index(kind)
    ctx, rep = vectors(N, 0), vectors(N, 1)
    index.add(conversations(0, N // TURNS), ctx, rep)
    return index, ctx, rep


def brute_force(ctx: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ ctx.T), axis=1)[:, :k]


def found_as_itself(index: DialogueIndex, ctx: np.ndarray, items: list[IndexedTurn]) -> float:
    """Share of ``items`` that come back in the top 3 when searched by their own vector."""
    hits = index.search(ctx, k=3)
    return float(
        np.mean([item in [h.item for h in row] for item, row in zip(items, hits, strict=True)])
    )


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_finds_stored_turns_with_their_metadata(kind: Kind) -> None:
    """A stored vector comes back as its own item, with its reply embedding and group."""
    index, ctx, rep = filled(kind)
    assert index.kind == kind and len(index) == N
    rows = np.arange(0, N, 7)
    hits = index.search(ctx[rows], k=5)
    assert all(len(row) == 5 for row in hits)
    items = conversations(0, N // TURNS)
    top = [row[0] for row in hits]
    assert np.mean([h.item == items[r] for h, r in zip(top, rows, strict=True)]) >= (
        1.0 if kind != "ivfpq" else 0.9
    )
    for h, r in zip(top, rows, strict=True):
        if h.item == items[r]:
            # kept as float16, read back as float32
            assert h.reply_embedding.dtype == np.float32
            np.testing.assert_allclose(h.reply_embedding, rep[r], atol=1e-3)
            assert h.item.group == r % TURNS
            assert h.similarity == pytest.approx(1.0, abs=1e-5 if kind != "ivfpq" else 0.1)
    for row in hits:  # best first
        sims = [h.similarity for h in row]
        assert sims == sorted(sims, reverse=True)


def test_flat_is_exact() -> None:
    """Flat search returns exactly the brute-force top k and the true cosines."""
    index, ctx, _ = filled("flat")
    queries = vectors(20, 5)
    hits = index.search(queries, k=10)
    truth = brute_force(ctx, queries, 10)
    items = conversations(0, N // TURNS)
    for q, row, true in zip(queries, hits, truth, strict=True):
        assert [h.item for h in row] == [items[i] for i in true]
        np.testing.assert_allclose([h.similarity for h in row], ctx[true] @ q, atol=1e-5)


def deleted_vectors_in(folder: Path, vecs: np.ndarray) -> int:
    """How many of ``vecs`` appear byte for byte in the saved FAISS file."""
    data = (folder / INDEX_FILE).read_bytes()
    return sum(v.tobytes() in data for v in vecs)


@pytest.mark.parametrize("kind", KINDS)
def test_deleted_conversations_never_come_back(kind: Kind, tmp_path: Path) -> None:
    """Forgotten turns are gone from results, memory and the saved files, also after load."""
    index, ctx, rep = filled(kind)
    forgotten = [f"c{c}" for c in range(0, 120, 6)]  # 20 conversations: 16 %, no compaction
    rows = np.asarray([c * TURNS + t for c in range(0, 120, 6) for t in range(TURNS)])
    index.save(tmp_path / "before")
    if kind != "ivfpq":  # the check below can see vectors in a file: it saw these
        assert deleted_vectors_in(tmp_path / "before", ctx[rows]) == len(rows)

    assert sum(index.delete_conversation(c) for c in forgotten) == len(rows)
    assert index.delete_conversation(forgotten[0]) == 0
    assert len(index) == N - len(rows)

    def check(idx: DialogueIndex) -> None:
        hits = idx.search(ctx[rows], k=10)  # the forgotten vectors themselves
        assert all(len(row) == 10 for row in hits), "k live hits still come back"
        assert not {h.item.conversation_id for row in hits for h in row} & set(forgotten)
        # k = everything: deleted (zeroed) vectors must not take the places of live ones
        everything = idx.search(ctx[:1], k=len(idx))[0]
        distinct = len({(h.item.conversation_id, h.item.turn) for h in everything})
        assert distinct >= (len(idx) if kind != "hnsw" else 0.99 * len(idx))  # HNSW: approximate

    check(index)
    memory = index._rows  # the in-memory metadata forgets at once, not at the next save
    assert not any(t.startswith(tuple(f"{c} " for c in forgotten)) for t in memory.contexts)
    assert not np.any(memory.reply_embeddings[rows]) and not memory.live[rows].any()
    index.save(tmp_path / "after")
    folder = tmp_path / "after"
    meta = (folder / META_FILE).read_text(encoding="utf-8")
    assert not any(f'"{c}"' in meta for c in forgotten)
    assert not any(f"{c} q" in meta or f"{c} a" in meta for c in forgotten)
    saved_replies = np.load(folder / REPLIES_FILE)
    assert len(saved_replies) == N - len(rows)
    assert not np.any(np.isclose(saved_replies @ rep[rows].T, 1.0, atol=1e-6))
    assert deleted_vectors_in(folder, ctx[rows]) == 0
    raw = faiss.read_index(str(folder / INDEX_FILE))
    if kind == "ivfpq":
        invlists = raw.invlists
        ids = np.concatenate(
            [
                faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
                for i in range(invlists.nlist)
            ]
        )
        assert len(ids) == N - len(rows) and not np.isin(rows, ids).any()
    else:  # every stored vector: none is (close to) a forgotten one
        stored = np.stack([raw.reconstruct(int(i)) for i in faiss.vector_to_array(raw.id_map)])
        assert not np.any(np.isclose(stored @ ctx[rows].T, 1.0, atol=1e-4))
    loaded = DialogueIndex.load(folder)
    assert len(loaded) == N - len(rows)
    check(loaded)
    assert loaded.delete_conversation(forgotten[1]) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_compaction_keeps_every_live_turn(kind: Kind, tmp_path: Path) -> None:
    """Past a quarter deleted, the index compacts; every remaining turn is still found."""
    index, ctx, _ = filled(kind)
    for c in range(0, N // TURNS, 2):  # half of the conversations
        index.delete_conversation(f"c{c}")
    items = conversations(0, N // TURNS)
    live = [r for r in range(N) if (r // TURNS) % 2]
    assert len(index) == len(live)
    stored = index._index.ntotal
    if kind == "hnsw":  # rebuilt without its deleted nodes, twice; a few zeroed ones since
        assert stored < N and stored - len(live) <= index_module.COMPACT_DEAD_FRACTION * stored
    else:
        assert stored == len(live)
    # then it keeps working: more adds, more deletes, a save and a load
    more_ctx = vectors(80, 7)
    index.add(conversations(500, 10), more_ctx, vectors(80, 8))
    index.delete_conversation("c1")
    loaded_path = tmp_path / "idx"
    index.save(loaded_path)
    loaded = DialogueIndex.load(loaded_path)
    live = live[TURNS:]
    wanted = 1.0 if kind != "ivfpq" else 0.9
    for idx in (index, loaded):
        assert len(idx) == len(live) + 80
        assert found_as_itself(idx, ctx[live], [items[r] for r in live]) >= wanted
        assert found_as_itself(idx, more_ctx, conversations(500, 10)) >= wanted
        assert not any(h.item.conversation_id == "c1" for row in idx.search(ctx, 3) for h in row)


def test_auto_switches_from_flat_to_hnsw_and_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` converts to HNSW when an add crosses the threshold; results stay correct."""
    monkeypatch.setattr(index_module, "AUTO_HNSW_THRESHOLD", 120)
    index = DialogueIndex(DIM)
    ctx = vectors(160, 0)
    items = conversations(0, 20)
    index.add(items[:96], ctx[:96], ctx[:96])
    assert index.kind == "flat"
    index.add(items[96:], ctx[96:], ctx[96:])
    assert index.kind == "hnsw"
    queries = vectors(30, 3)
    truth = brute_force(ctx, queries, 5)
    for row, true in zip(index.search(queries, k=5), truth, strict=True):
        assert [h.item for h in row] == [items[i] for i in true]
    for c in range(5):  # 40 of 160 deleted: 25 %, not yet compacted
        index.delete_conversation(f"c{c}")
    assert index.kind == "hnsw"
    index.delete_conversation("c5")  # 30 %: compaction finds 112 <= 120 and goes exact
    assert index.kind == "flat"
    truth = brute_force(ctx[48:], queries, 5)
    for row, true in zip(index.search(queries, k=5), truth, strict=True):
        assert [h.item for h in row] == [items[48 + i] for i in true]


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trips_kind_and_tunables_and_keeps_adding(
    kind: Kind, tmp_path: Path
) -> None:
    """A loaded index has the same structure, knobs and results, and takes more turns."""
    index = DialogueIndex(DIM, kind, hnsw_m=8, ef_construction=20, ef_search=12, nprobe=5, pq_m=DIM)
    ctx = vectors(N, 0)
    index.add(conversations(0, N // TURNS), ctx, vectors(N, 1))
    index.save(tmp_path / "idx")
    assert np.load(tmp_path / "idx" / REPLIES_FILE).dtype == np.float16  # half of float32
    loaded = DialogueIndex.load(tmp_path / "idx")
    assert loaded.kind == kind and loaded.settings == index.settings and len(loaded) == N
    queries = vectors(10, 4)
    before, after = index.search(queries, k=5), loaded.search(queries, k=5)
    assert [[h.item for h in row] for row in before] == [[h.item for h in row] for row in after]
    for b_row, a_row in zip(before, after, strict=True):
        for b, a in zip(b_row, a_row, strict=True):
            np.testing.assert_array_equal(b.reply_embedding, a.reply_embedding)
    extra = vectors(8, 9)
    loaded.add(turns("new", 8), extra, extra)
    assert len(loaded) == N + 8
    assert IndexedTurn("new", 0, "new q0", "new a0") in [
        h.item for h in loaded.search(extra[:1], 3)[0]
    ]


def test_small_batches_search_on_one_thread_and_restore_the_setting() -> None:
    """A search leaves the caller's OpenMP thread count as it found it."""
    index, ctx, _ = filled("flat")
    faiss.omp_set_num_threads(2)
    try:
        assert len(index.search(ctx[:1], k=3)[0]) == 3
        assert faiss.omp_get_max_threads() == 2
        assert len(index.search(ctx[:40], k=3)) == 40  # a batch: every thread
        assert faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(1)


def test_tune_changes_the_search_knobs() -> None:
    """``tune`` sets efSearch and nprobe without a rebuild and refuses nonsense."""
    index, _, _ = filled("ivfpq")
    index.tune(nprobe=3)
    assert index.settings.nprobe == 3 and index._index.nprobe == 3
    index.tune(ef_search=7)
    assert index.settings.ef_search == 7 and index.settings.nprobe == 3
    with pytest.raises(RetrievalError, match="nprobe"):
        index.tune(nprobe=0)


def test_empty_index_returns_no_hits(tmp_path: Path) -> None:
    """Searching an empty index is not an error, and an untrained ivfpq saves and loads."""
    for kind in KINDS:
        assert DialogueIndex(DIM, kind).search(vectors(2, 0), k=5) == [[], []]
    DialogueIndex(DIM, "ivfpq").save(tmp_path / "ivf")
    loaded = DialogueIndex.load(tmp_path / "ivf")
    assert loaded.kind == "ivfpq" and len(loaded) == 0
    loaded.add(conversations(0, 100), vectors(800, 0), vectors(800, 1))
    assert len(loaded) == 800


def test_ivfpq_refuses_to_train_on_too_few_vectors() -> None:
    """The first ivfpq add must bring enough vectors to train on; the error says how many."""
    with pytest.raises(RetrievalError, match="at least 640 vectors; got 100"):
        DialogueIndex(DIM, "ivfpq").add(turns("a", 100), vectors(100, 0), vectors(100, 1))


@pytest.mark.parametrize(
    ("n", "dim", "pq_m", "layout"),
    [
        (640, 8, None, (16, 4, 4)),  # as small as it gets: 16 lists, 16-entry codebooks
        (10_000, 384, None, (250, 192, 7)),  # 40 points per centroid caps lists and bits
        (1_000_000, 384, None, (4000, 192, 8)),  # 4 sqrt(n) lists, a byte per 2 dimensions
        (1_000_000, 384, 48, (4000, 48, 8)),
        (1_000_000, 100, None, (4000, 50, 8)),
        (1_000_000, 30, None, (4000, 15, 8)),
        (1_000_000, 27, None, (4000, 9, 8)),  # the largest divisor of dim <= dim / 2
    ],
)
def test_ivfpq_layout_scales_with_size(
    n: int, dim: int, pq_m: int | None, layout: tuple[int, int, int]
) -> None:
    """(nlist, sub-quantizers, bits) for a first add of n vectors."""
    assert ivfpq_layout(n, dim, pq_m) == layout


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: DialogueIndex(DIM).add(turns("a", 2), vectors(3, 0), vectors(2, 0)),
            r"context embeddings: expected shape \(2, 8\), got \(3, 8\)",
        ),
        (
            lambda: DialogueIndex(DIM).add(turns("a", 2), vectors(2, 0), vectors(2, 0)[:, :4]),
            r"reply embeddings: expected shape \(2, 8\)",
        ),
        (
            lambda: DialogueIndex(DIM).search(vectors(2, 0)[:, :4], k=3),
            r"queries: expected shape \(B, 8\), got \(2, 4\)",
        ),
        (
            lambda: DialogueIndex(DIM).search(vectors(2, 0)[0], k=3),
            r"queries: expected shape \(B, 8\), got \(8,\)",
        ),
        (lambda: DialogueIndex(DIM, "annoy"), "index kind must be one of auto, flat, hnsw"),  # type: ignore[arg-type]
        (lambda: DialogueIndex(DIM, "ivfpq", pq_m=3), "pq_m must divide the dimension 8"),
        (lambda: DialogueIndex(DIM, "hnsw", hnsw_m=0), "hnsw_m must be a positive int"),
    ],
)
def test_bad_shapes_and_settings_are_refused(call: Callable[[], object], message: str) -> None:
    """Wrong shapes and settings raise RetrievalError saying what was expected."""
    with pytest.raises(RetrievalError, match=message):
        call()


def test_loading_a_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    """A folder without an index raises RetrievalError naming the folder."""
    with pytest.raises(RetrievalError, match=str(tmp_path)):
        DialogueIndex.load(tmp_path)


def _corrupt_meta(folder: Path) -> None:
    lines = (folder / META_FILE).read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3][:20]
    (folder / META_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _drop_meta_row(folder: Path) -> None:
    lines = (folder / META_FILE).read_text(encoding="utf-8").splitlines()
    (folder / META_FILE).write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")


def _drop_meta_row_and_reply(folder: Path) -> None:
    _drop_meta_row(folder)
    np.save(folder / REPLIES_FILE, np.load(folder / REPLIES_FILE)[:-1])


def _swap_structure(folder: Path) -> None:
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    config["structure"] = "flat"
    (folder / CONFIG_FILE).write_text(json.dumps(config), encoding="utf-8")


@pytest.mark.parametrize(
    ("kind", "damage", "message"),
    [
        ("flat", lambda f: (f / INDEX_FILE).write_bytes(b"not faiss"), INDEX_FILE),
        ("flat", lambda f: (f / CONFIG_FILE).write_text("{", encoding="utf-8"), CONFIG_FILE),
        ("flat", lambda f: (f / REPLIES_FILE).write_bytes(b"x"), REPLIES_FILE),
        ("flat", lambda f: (f / META_FILE).unlink(), META_FILE),
        ("flat", _corrupt_meta, rf"{META_FILE}, line 4"),
        (
            "flat",
            _drop_meta_row,
            rf"{REPLIES_FILE}: expected float16 or float32 .* shape \(39, 8\)",
        ),
        ("flat", _drop_meta_row_and_reply, rf"{INDEX_FILE}: holds 40 vectors .* 39 rows"),
        ("hnsw", _drop_meta_row_and_reply, rf"{INDEX_FILE}: holds vectors of deleted rows"),
        ("hnsw", _swap_structure, rf"{INDEX_FILE}: expected a FAISS flat index, got hnsw"),
    ],
)
def test_a_damaged_folder_is_refused_naming_the_file(
    kind: Kind, damage: Callable[[Path], object], message: str, tmp_path: Path
) -> None:
    """Corrupt or mismatched files raise RetrievalError naming the file at fault."""
    index = DialogueIndex(DIM, kind)
    index.add(conversations(0, 5), vectors(40, 0), vectors(40, 1))
    index.save(tmp_path)
    damage(tmp_path)
    with pytest.raises(RetrievalError, match=message):
        DialogueIndex.load(tmp_path)


def test_a_format_1_folder_still_loads(tmp_path: Path) -> None:
    """Folders written before index kinds existed (no config, no group) load as flat."""
    raw = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    ctx, rep = vectors(3, 0), vectors(3, 1)
    raw.add_with_ids(ctx, np.asarray([0, 2, 5], dtype=np.int64))
    faiss.write_index(raw, str(tmp_path / INDEX_FILE))
    rows = [
        {"id": i, "conversation_id": "a", "turn": i, "context": "q", "reply": "r"}
        for i in (0, 2, 5)
    ]
    (tmp_path / META_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    np.save(tmp_path / REPLIES_FILE, rep)
    index = DialogueIndex.load(tmp_path)
    assert index.kind == "flat" and len(index) == 3
    hit = index.search(ctx[2:], k=1)[0][0]
    assert hit.item == IndexedTurn("a", 5, "q", "r", group=-1)
    np.testing.assert_allclose(hit.reply_embedding, rep[2], atol=1e-3)  # float32 file loads
    index.add(turns("b", 1), vectors(1, 4), vectors(1, 4))  # new ids do not collide
    assert len(index) == 4 and index.delete_conversation("a") == 3


def test_a_rows_question_survives_save_and_load(tmp_path: Path) -> None:
    """The question a reply answers is stored where it is not the context's newest customer
    turn, and read back; otherwise the context's newest customer turn stands for it."""
    from retrieval.index import IndexedTurn

    index = DialogueIndex(4)
    items = [
        IndexedTurn(
            "a", 1, "customer: I want a person [SEP] customer: buy back?", "Yes.", 0, "buy back?"
        ),
        IndexedTurn("b", 1, "customer: where is it?", "Here.", 1),
    ]
    vectors = np.eye(4, dtype=np.float32)[:2]
    index.add(items, vectors, vectors)
    index.save(tmp_path / "ix")
    loaded = DialogueIndex.load(tmp_path / "ix")
    assert [loaded.question_text(r) for r in range(2)] == ["buy back?", "where is it?"]
