"""Retrieved replies -> distinct candidates with calibrated scores."""

from __future__ import annotations

import numpy as np

from retrieval.index import DialogueIndex, Hit, IndexedTurn
from retrieval.ranking import ReplyCalibration, rank_hits, rank_rows


def hit(reply: str, group: int, context_sim: float, reply_vec: list[float]) -> Hit:
    vec = np.asarray(reply_vec, dtype=np.float32)
    return Hit(IndexedTurn(f"c-{reply}", 1, "ctx", reply, group), context_sim, vec)


QUERY = np.asarray([1.0, 0.0], dtype=np.float32)


def test_one_candidate_per_group_with_its_best_score_best_first() -> None:
    hits = [
        hit("Thanks, bye!", 3, 0.9, [0.0, 1.0]),
        hit("thanks - bye", 3, 0.6, [0.0, 1.0]),
        hit("Your refund is on its way.", 7, 0.8, [1.0, 0.0]),
    ]
    calibration = ReplyCalibration(weight=0.5, slope=1.0, intercept=0.0)
    ranked = rank_hits(QUERY, hits, calibration, k=5)
    assert [r.text for r in ranked] == ["Your refund is on its way.", "Thanks, bye!"]
    # fused: 0.5 * 0.8 + 0.5 * 1.0 = 0.9 and 0.5 * 0.9 + 0.5 * 0.0 = 0.45
    assert np.isclose(ranked[0].score, 1 / (1 + np.exp(-0.9)))
    assert np.isclose(ranked[1].score, 1 / (1 + np.exp(-0.45)))
    assert rank_hits(QUERY, hits, calibration, k=1) == ranked[:1]


def test_the_weight_chooses_between_context_and_reply_evidence() -> None:
    hits = [hit("A", 1, 0.95, [0.0, 1.0]), hit("B", 2, 0.5, [1.0, 0.0])]
    by_context = rank_hits(QUERY, hits, ReplyCalibration(weight=1.0), k=2)
    by_reply = rank_hits(QUERY, hits, ReplyCalibration(weight=0.0), k=2)
    assert [r.text for r in by_context] == ["A", "B"]
    assert [r.text for r in by_reply] == ["B", "A"]


def test_replies_with_unfilled_placeholders_are_never_offered() -> None:
    hits = [
        hit("Your order {{Order Number}} has shipped.", 1, 0.99, [1.0, 0.0]),
        hit("It has shipped.", 2, 0.7, [1.0, 0.0]),
    ]
    assert [r.text for r in rank_hits(QUERY, hits, ReplyCalibration(), k=5)] == ["It has shipped."]
    assert rank_hits(QUERY, hits[:1], ReplyCalibration(), k=5) == []


def test_calibration_round_trips_and_defaults_to_half_at_three_quarters() -> None:
    calibration = ReplyCalibration(weight=0.25, slope=8.0, intercept=-5.0, fitted_on=120)
    assert ReplyCalibration.from_json(calibration.to_json()) == calibration
    default = ReplyCalibration.from_json(None)
    assert default.fitted_on == 0
    assert np.isclose(default.probability(np.asarray([0.75], np.float32))[0], 0.5)


def test_any_candidate_gets_context_evidence_from_the_hit_with_the_same_reply() -> None:
    from retrieval.ranking import score_candidates

    hits = [hit("Refund sent.", 1, 0.8, [1.0, 0.0]), hit("Bye!", 2, 0.3, [0.0, 1.0])]
    calibration = ReplyCalibration(weight=0.5, slope=1.0, intercept=0.0)
    candidates = np.asarray(
        [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32
    )  # = hit 1's reply, unrelated to any hit, = hit 2's reply
    scores = score_candidates(QUERY, candidates, hits, calibration)
    expected_fused = [0.5 * 0.8 + 0.5 * 1.0, 0.5 * 0.0 + 0.5 * 0.6, 0.5 * 0.3 + 0.5 * 0.0]
    assert np.allclose(scores, 1 / (1 + np.exp(-np.asarray(expected_fused))))
    # a retrieved reply scores the same here as in rank_hits
    (top,) = rank_hits(QUERY, hits[:1], calibration, k=1)
    assert np.isclose(top.score, scores[0])
    # no hits: the reply fit alone
    alone = score_candidates(QUERY, candidates, [], calibration)
    assert np.allclose(alone, 1 / (1 + np.exp(-0.5 * (candidates @ QUERY))))


def test_batch_ranking_matches_ranking_hit_by_hit() -> None:
    """rank_rows (the serving path: arrays, no object per hit) gives rank_hits' replies,
    scores and order on index.search's hits, over groups, ungrouped duplicates, unfilled
    templates, deleted conversations and queries with fewer hits than asked for."""
    rng = np.random.default_rng(7)
    dim, n = 16, 300
    texts = [f"reply {i % 40}" for i in range(n)]
    texts[5] = "Hello {{name}}, your order shipped."
    items = [
        IndexedTurn(f"c{i // 6}", i % 6, f"ctx {i}", texts[i], int(rng.integers(-1, 12)))
        for i in range(n)
    ]
    unit = rng.normal(size=(2 * n + 8, dim)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    index = DialogueIndex(dim)
    index.add(items, unit[:n], unit[n : 2 * n])
    index.delete_conversation("c3")
    queries = unit[2 * n :]
    calibration = ReplyCalibration(weight=0.4, slope=9.0, intercept=-4.0)
    for fetch, k in ((20, 5), (60, 10), (1, 1)):
        hits = index.search(queries, fetch)
        sims, rows = index.search_rows(queries, fetch)
        batched = rank_rows(queries, sims, rows, index, calibration, k)
        for query, row_hits, fast in zip(queries, hits, batched, strict=True):
            slow = rank_hits(query, row_hits, calibration, k)
            assert [(r.text, r.conversation_id, r.group) for r in fast] == [
                (r.text, r.conversation_id, r.group) for r in slow
            ]
            assert np.allclose([r.score for r in fast], [r.score for r in slow], atol=1e-6)
    assert all(r.text != texts[5] for ranked in batched for r in ranked)
    empty = DialogueIndex(dim)
    assert rank_rows(queries, *empty.search_rows(queries, 5), empty, calibration, 3) == [
        [] for _ in queries
    ]


def test_batch_ranking_breaks_ties_as_ranking_hit_by_hit() -> None:
    """Equal scores (here a saturated curve: 1.0) keep rank_hits' order, by where each
    group first appears among the hits, even when a later hit of it gives its best score;
    hits FAISS could not fill (-FLT_MAX similarity, row -1) take no part and warn nothing."""

    def unit(*xs: float) -> list[float]:
        return [*xs, float(np.sqrt(max(0.0, 1 - sum(x * x for x in xs))))]

    query = np.asarray([1.0, 0.0, 0.0], dtype=np.float32)
    context = np.asarray([unit(0.9, 0.0), unit(0.8, 0.0), unit(0.7, 0.0)], dtype=np.float32)
    reply = np.asarray([[-1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]], dtype=np.float32)
    items = [
        IndexedTurn("c1", 0, "a", "first of group 1", 1),  # seen first, scores ~0
        IndexedTurn("c2", 0, "b", "group 2", 2),  # 1.0
        IndexedTurn("c3", 0, "c", "second of group 1", 1),  # 1.0: group 1's best
    ]
    index = DialogueIndex(3)
    index.add(items, context, reply)
    saturated = ReplyCalibration(weight=0.5, slope=1000.0, intercept=0.0)
    (hits,) = index.search(query[None], 5)
    slow = rank_hits(query, hits, saturated, k=1)
    sims, rows = index.search_rows(query[None], 5)
    assert (
        [r.text for r in rank_rows(query[None], sims, rows, index, saturated, 1)[0]]
        == [r.text for r in slow]
        == ["second of group 1"]
    )
    padded_sims = np.concatenate([sims, np.full((1, 2), -3.4028235e38, np.float32)], axis=1)
    padded_rows = np.concatenate([rows, np.full((1, 2), -1)], axis=1)
    with np.errstate(over="raise", invalid="raise"):
        (padded,) = rank_rows(query[None], padded_sims, padded_rows, index, saturated, 5)
    assert [r.text for r in padded] == [r.text for r in rank_hits(query, hits, saturated, 5)]
    assert rank_rows(query[None], sims, rows, index, saturated, 0) == [[]]
