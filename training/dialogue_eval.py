"""The response-ranking protocol of ``frontdesk dialogues eval`` (1 of 100).

For every agent turn with at least one customer turn before it in the test logs, the
candidates are the true reply plus 99 replies drawn at random (seed 0) from the agent turns
of *other* test conversations; the system ranks them given the context (up to 3 previous
turns). A drawn reply whose text is the true reply's (``Thank you and goodbye.`` is in
hundreds of conversations) is drawn again: it is the right answer, not a distractor.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt

from retrieval import bundle as bundle_files
from retrieval.bundle import Bundle
from retrieval.chatlog import ChatLog, TurnRole
from retrieval.index import DialogueIndex, Hit
from retrieval.pairs import CONTEXT_TURNS, dialogue_pairs
from retrieval.ranking import ReplyCalibration, score_candidates
from training.errors import TrainingError

CANDIDATES = 100
SEED = 0
RECALL_AT = (1, 5, 10)

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class RankingCase:
    context: str
    candidates: tuple[str, ...]
    """The true reply first, then the drawn ones."""
    conversation_id: str = ""
    """The conversation the context and the true reply come from."""


def ranking_cases(
    logs: Iterable[ChatLog],
    *,
    candidates: int = CANDIDATES,
    seed: int = SEED,
    window: int = CONTEXT_TURNS,
    redact: Callable[[str], str] | None = None,
    redact_contexts: bool = True,
) -> list[RankingCase]:
    """The protocol's cases, in log order. Fewer candidates only when the other
    conversations do not have that many different replies. ``redact`` applies to the
    replies and, unless ``redact_contexts`` is false, to the contexts: the server reads a
    customer's message and the turns before it as they were written (only what it has
    indexed, and so can answer with, is redacted)."""
    logs = list(logs)
    clean = redact or (lambda text: text)
    pool_texts: list[str] = []
    pool_owner: list[str] = []
    for log in logs:
        for turn in log.turns:
            if turn.role is TurnRole.AGENT:
                pool_texts.append(clean(turn.text.strip()))
                pool_owner.append(log.id)
    owners = np.asarray(pool_owner)
    texts = np.asarray(pool_texts, dtype=object)
    rng = np.random.default_rng(seed)
    cases: list[RankingCase] = []
    pairs = dialogue_pairs(logs, window=window, redact=redact, keep_repeats=True)
    contexts = [pair.context for pair in pairs]
    if redact is not None and not redact_contexts:
        # the same pairs (which turns pair up depends on the roles only), as written
        as_written = dialogue_pairs(logs, window=window, keep_repeats=True)
        contexts = [pair.context for pair in as_written]
    for pair, context in zip(pairs, contexts, strict=True):
        allowed = np.flatnonzero((owners != pair.conversation_id) & (texts != pair.reply))
        if allowed.size == 0:
            continue
        want = min(candidates - 1, allowed.size)
        drawn = rng.choice(allowed, size=want, replace=False)
        options = (pair.reply, *(str(texts[i]) for i in drawn))
        cases.append(RankingCase(context, options, pair.conversation_id))
    if not cases:
        raise TrainingError(
            "no test cases: expected agent turns after a customer turn in at least two "
            "conversations"
        )
    return cases


def ranks(case_scores: Sequence[Vectors]) -> npt.NDArray[np.int64]:
    """1-based rank of the true reply (column 0) in each case; ties count against it."""
    return np.asarray([int((s[1:] >= s[0]).sum()) + 1 for s in case_scores], dtype=np.int64)


def ranking_metrics(rank: npt.NDArray[np.int64]) -> dict[str, float | int]:
    """The ``dialogues eval`` JSON: n, recall@1/5/10, mrr."""
    out: dict[str, float | int] = {"n": int(rank.size)}
    for k in RECALL_AT:
        out[f"recall@{k}"] = round(float((rank <= k).mean()), 4) if rank.size else 0.0
    out["mrr"] = round(float((1.0 / rank).mean()), 4) if rank.size else 0.0
    return out


def score_cases(
    cases: Sequence[RankingCase],
    encode: Callable[[Sequence[str]], Vectors],
    encode_contexts: Callable[[Sequence[str]], Vectors] | None = None,
) -> list[Vectors]:
    """Dual-encoder scores: cosine of the context's and each candidate's embedding.
    Every distinct text is encoded once; ``encode_contexts`` reads the windows (default
    ``encode``)."""
    contexts = sorted({c.context for c in cases})
    replies = sorted({r for c in cases for r in c.candidates})
    ctx = dict(zip(contexts, (encode_contexts or encode)(contexts), strict=True))
    rep_index = {text: i for i, text in enumerate(replies)}
    rep = encode(replies)
    return [rep[[rep_index[r] for r in case.candidates]] @ ctx[case.context] for case in cases]


def score_cases_with_index(
    cases: Sequence[RankingCase],
    encode: Callable[[Sequence[str]], Vectors],
    index: DialogueIndex,
    calibration: ReplyCalibration,
    depth: int,
    encode_contexts: Callable[[Sequence[str]], Vectors] | None = None,
    *,
    leave_out_own: bool = False,
) -> list[Vectors]:
    """The served scores (``retrieval.ranking.score_candidates``): each candidate's cosine to
    the context, fused with the evidence of the ``depth`` nearest past moments in ``index``
    whose agent reply was that same answer, weighted by the bundle's fitted calibration.
    ``encode_contexts`` encodes the contexts as the server does (shorter), default ``encode``.
    ``leave_out_own``: the past moments of a case's own conversation are not evidence (they
    are left out, and ``depth`` others taken): conversations that ``index`` holds are scored
    as if it did not (leave-one-conversation-out)."""
    contexts = sorted({c.context for c in cases})
    replies = sorted({r for c in cases for r in c.candidates})
    ctx_emb = (encode_contexts or encode)(contexts)
    ctx_row = {text: i for i, text in enumerate(contexts)}
    rep_index = {text: i for i, text in enumerate(replies)}
    rep = encode(replies)
    # a conversation holds at most as many indexed moments as it gives cases
    own = Counter(c.conversation_id for c in cases) if leave_out_own else Counter()
    hits = index.search(ctx_emb, depth + max(own.values(), default=0))

    def evidence(case: RankingCase) -> list[Hit]:
        found = hits[ctx_row[case.context]]
        if leave_out_own:
            found = [h for h in found if h.item.conversation_id != case.conversation_id]
        return found[:depth]

    return [
        score_candidates(
            ctx_emb[ctx_row[case.context]],
            rep[[rep_index[r] for r in case.candidates]],
            evidence(case),
            calibration,
        )
        for case in cases
    ]


def score_served(
    bundle: Bundle, cases: Sequence[RankingCase], *, leave_out_own: bool = False
) -> list[Vectors]:
    """:func:`score_cases_with_index` as the server scores with ``bundle`` (``frontdesk
    dialogues eval``): its encoder, index and reply calibration, the retrieval depth of
    :meth:`Bundle.analyze` (``REPLIES`` x ``OVERFETCH``), and its context windows encoded as
    served (joint ones cut as the server cuts them, fused ones from their turns)."""
    return score_cases_with_index(
        cases,
        bundle.encoder.encode,
        bundle.index,
        bundle.reply_calibration,
        depth=bundle_files.REPLIES * bundle_files.OVERFETCH,
        encode_contexts=partial(
            bundle.context_encoding.encode, bundle.encoder.encode, serving=True
        ),
        leave_out_own=leave_out_own,
    )
