"""Fine-tune the shared encoder as a response ranker on (context -> agent reply) pairs.

A dual encoder: context and reply are embedded by the same model and scored by cosine, so
that at serving time the one encoder pass over the message serves the intents, the
retrieval and the ranking (reply embeddings are computed once, at index time). The loss is
softmax cross-entropy over the batch's replies (in-batch negatives) plus one mined hard
negative a pair: a reply of another group that the base encoder ranks high for that context.
Replies of the same near-duplicate group are never used as each other's negatives, and a
group contributes at most ``max_pairs_per_group`` pairs, so canned answers do not drown the
rest. The model of the best epoch on held-out conversations is kept, and the base encoder
when no epoch beats it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm.auto import tqdm

from retrieval.chatlog import ChatLog
from retrieval.context import ContextEncoding, Mode
from retrieval.encoder import Encoder
from retrieval.index import IndexedTurn
from retrieval.pairs import dialogue_pairs
from training.dialogue_eval import RankingCase, ranking_cases, ranking_metrics, ranks, score_cases
from training.intents import apply_step, seed_everything, warmup_then_decay
from training.objectives import Auxiliary, RankingObjective
from training.precision import PRECISIONS, uses_bf16

log = logging.getLogger(__name__)


MIN_TRAIN_PAIRS = 200
"""Fewer pairs than this teach a 22M-parameter encoder more noise than answers."""
MIN_VALID_CASES = 100
"""Fewer held-out cases than this cannot tell epochs apart."""


@dataclass(frozen=True)
class RankerArguments:
    epochs: int | None = None
    """None: chosen from the data size, about ``pairs_budget`` pairs seen in all (1 to 8
    epochs; one epoch over a random ``pairs_budget`` of them when there are more)."""
    pairs_budget: int = 40_000
    """Two epochs over STAR's ~23,000 training pairs: STAR recall@1 0.610 as served, against
    0.553 with 12,000 (BENCHMARKS.md). About an hour of steps on a quiet 2-core CPU for a
    collection that size (~2 s a step of 32), a few minutes on a GPU; small collections
    stop at 8 epochs."""
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    scale: float = 20.0
    """logits = scale * cosine."""
    hard_negatives: bool = True
    hard_negative_ranks: tuple[int, int] = (2, 30)
    """A pair's hard negative is drawn from these ranks (0-based, other groups only) of the
    base encoder's ranking of all distinct replies: the very top is often a paraphrase."""
    max_pairs_per_group: int = 100
    valid_fraction: float = 0.05
    """Share of conversations held out to pick the best epoch (none under 20 conversations)."""
    freeze_word_embeddings: bool = True
    head_learning_rate: float = 3e-3
    """Learning rate of an auxiliary objective's own parameters (the intents' class vectors
    when the bot's intents train along)."""
    context: Mode = "joint"
    """How a context window is encoded, and trained for (``retrieval.context``): ``joint``
    (one sequence) or ``fused`` (each turn alone, summed; serving encodes one message)."""
    max_length: int = 128
    seed: int = 13
    device: str = "auto"
    precision: str = "auto"
    """As :attr:`training.args.TrainingArguments.precision`."""

    def __post_init__(self) -> None:
        low, high = self.hard_negative_ranks
        checks = {
            "epochs": self.epochs is None or self.epochs >= 0,
            "pairs_budget": self.pairs_budget >= 1,
            "batch_size": self.batch_size >= 2,
            "learning_rate": self.learning_rate > 0,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "scale": self.scale > 0,
            "hard_negative_ranks": 0 <= low < high,
            "max_pairs_per_group": self.max_pairs_per_group >= 1,
            "valid_fraction": 0 <= self.valid_fraction < 1,
            "max_length": self.max_length >= 16,
            "device": self.device in {"auto", "cpu", "cuda"},
            "precision": self.precision in PRECISIONS,
            "context": self.context in {"joint", "fused"},
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in bad)
            raise ValueError(f"invalid ranker arguments: {shown}")

    def epochs_for(self, pairs: int) -> int:
        if self.epochs is not None:
            return self.epochs
        return min(8, max(1, round(self.pairs_budget / max(1, pairs))))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> RankerArguments:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(cls)}
        if "hard_negative_ranks" in data:
            data["hard_negative_ranks"] = tuple(data["hard_negative_ranks"])
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class RankerEpoch:
    epoch: int
    loss: float | None
    valid_recall_at_1: float | None
    seconds: float


@dataclass(frozen=True)
class RankerTraining:
    history: tuple[RankerEpoch, ...]
    best_epoch: int
    """0: the base encoder was kept."""
    train_pairs: int
    valid_conversations: int
    valid_metrics: dict[str, float | int] | None
    note: str | None = None
    """Why the base encoder was kept without training, when it was."""


def split_conversations(
    logs: Sequence[ChatLog], fraction: float, seed: int, minimum: int = 20
) -> tuple[list[ChatLog], list[ChatLog]]:
    """Hold out about ``fraction`` of the conversations (none when there are fewer than
    ``minimum``). -> (train, valid)"""
    if len(logs) < minimum or fraction <= 0:
        return list(logs), []
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(logs))
    take = max(2, round(len(logs) * fraction))
    held = set(order[:take].tolist())
    return (
        [log for i, log in enumerate(logs) if i not in held],
        [log for i, log in enumerate(logs) if i in held],
    )


def cap_groups(
    pairs: Sequence[IndexedTurn], per_group: int, rng: np.random.Generator
) -> list[IndexedTurn]:
    """At most ``per_group`` pairs of each reply group, drawn at random, order kept."""
    by_group: dict[int, list[int]] = {}
    for i, pair in enumerate(pairs):
        by_group.setdefault(pair.group, []).append(i)
    keep: list[int] = []
    for rows in by_group.values():
        if len(rows) > per_group:
            rows = sorted(rng.choice(rows, size=per_group, replace=False).tolist())
        keep.extend(rows)
    return [pairs[i] for i in sorted(keep)]


def mine_hard_negatives(
    context_emb: npt.NDArray[np.float32],
    groups: npt.NDArray[np.int64],
    reply_emb: npt.NDArray[np.float32],
    reply_groups: npt.NDArray[np.int64],
    ranks_window: tuple[int, int],
    rng: np.random.Generator,
) -> npt.NDArray[np.int64]:
    """For each context, the index of a distinct reply (row of ``reply_emb``) of another
    group that ranks within ``ranks_window`` for it; -1 when there is none."""
    low, high = ranks_window
    out = np.full(len(context_emb), -1, dtype=np.int64)
    depth = min(high + 8, len(reply_emb))
    for start in range(0, len(context_emb), 1024):
        sims = context_emb[start : start + 1024] @ reply_emb.T  # (b, R)
        top = np.argpartition(-sims, depth - 1, axis=1)[:, :depth]
        for row, cand in enumerate(top):
            cand = cand[np.argsort(-sims[row, cand])]
            cand = cand[reply_groups[cand] != groups[start + row]][low:high]
            if cand.size:
                out[start + row] = int(rng.choice(cand))
    return out


def evaluate_encoder(
    encoder: Encoder, cases: Sequence[RankingCase], context: ContextEncoding | None = None
) -> dict[str, float | int]:
    context = context or ContextEncoding()
    encode_contexts = partial(context.encode, encoder.encode)
    return ranking_metrics(ranks(score_cases(cases, encoder.encode, encode_contexts)))


@dataclass(frozen=True)
class RankingData:
    """What the ranking objective trains and validates on."""

    objective: RankingObjective | None
    """None: too few pairs to fine-tune on (``note`` says so)."""
    cases: list[RankingCase]
    """Held-out 1-of-100 cases that pick the best epoch (none for small collections)."""
    valid_logs: list[ChatLog]
    pairs: int
    note: str | None = None


def ranking_data(
    encoder: Encoder,
    logs: Sequence[ChatLog],
    args: RankerArguments,
    rng: np.random.Generator,
    *,
    redact: Callable[[str], str] | None = None,
) -> RankingData:
    """The (context -> reply) pairs of the conversations not held out, capped per reply
    group and to the pairs budget, with their mined hard negatives; the held-out cases."""
    context = ContextEncoding(args.context)
    train_logs, valid_logs = split_conversations(logs, args.valid_fraction, args.seed)
    cases: list[RankingCase] = []
    if valid_logs:
        cases = ranking_cases(valid_logs, redact=redact)
        if len(cases) < MIN_VALID_CASES:  # too few to choose an epoch by: train on them too
            train_logs, valid_logs, cases = list(logs), [], []
    pairs = cap_groups(dialogue_pairs(train_logs, redact=redact), args.max_pairs_per_group, rng)
    if len(pairs) < MIN_TRAIN_PAIRS:
        note = (
            f"{len(pairs)} (context, reply) pairs are too few to fine-tune on "
            f"(at least {MIN_TRAIN_PAIRS}); the base encoder ranks"
        )
        return RankingData(None, [], [], len(pairs), note)
    if args.epochs is None and len(pairs) > args.pairs_budget:
        keep = np.sort(rng.choice(len(pairs), size=args.pairs_budget, replace=False))
        pairs = [pairs[i] for i in keep]
    groups = np.asarray([p.group for p in pairs], dtype=np.int64)
    hard: npt.NDArray[np.int64] | None = None
    distinct: list[str] = []
    distinct_groups: npt.NDArray[np.int64] | None = None
    if args.hard_negatives:
        first: dict[int, int] = {}
        for i, group in enumerate(groups.tolist()):
            first.setdefault(group, i)
        distinct = [pairs[i].reply for i in first.values()]
        distinct_groups = np.asarray(list(first.keys()), dtype=np.int64)
        hard = mine_hard_negatives(
            context.encode(encoder.encode, [p.context for p in pairs]),
            groups,
            encoder.encode(distinct),
            distinct_groups,
            args.hard_negative_ranks,
            rng,
        )
    objective = RankingObjective(
        encoder,
        pairs,
        context=context,
        scale=args.scale,
        batch_size=args.batch_size,
        rng=rng,
        hard=hard,
        distinct=distinct,
        distinct_groups=distinct_groups,
    )

    return RankingData(objective, cases, valid_logs, len(pairs))


def train_ranker(
    encoder: Encoder,
    logs: Sequence[ChatLog],
    args: RankerArguments,
    *,
    redact: Callable[[str], str] | None = None,
    progress: bool = True,
    auxiliary: Auxiliary | None = None,
) -> RankerTraining:
    """Fine-tune ``encoder`` in place on the (redacted) pairs of ``logs``; conversations held
    out for validation pick the best epoch. ``auxiliary``: a second objective of the same
    encoder (the bot's intents), one batch of it added to each step's loss."""
    seed_everything(args.seed)
    rng = np.random.default_rng(args.seed)
    context = ContextEncoding(args.context)
    data = ranking_data(encoder, logs, args, rng, redact=redact)
    if data.objective is None:
        log.warning(data.note)
        return RankerTraining((), 0, data.pairs, 0, None, data.note)
    objective, cases, valid_logs = data.objective, data.cases, data.valid_logs
    model = encoder.model
    if args.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    epochs = args.epochs_for(len(objective))
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
    if auxiliary is not None and auxiliary.parameters():
        optimizer.add_param_group({"params": auxiliary.parameters(), "lr": args.head_learning_rate})
    steps_per_epoch = math.ceil(len(objective) / args.batch_size)
    total = max(1, steps_per_epoch * epochs)
    scheduler = warmup_then_decay(optimizer, total, args.warmup_ratio)
    use_amp = uses_bf16(args.precision, encoder.device)

    history: list[RankerEpoch] = []
    best_score = -1.0
    best_epoch = 0
    best_state: dict[str, torch.Tensor] | None = None
    best_metrics: dict[str, float | int] | None = None
    if cases:
        started = time.perf_counter()
        best_metrics = evaluate_encoder(encoder, cases, context)
        best_score = float(best_metrics["recall@1"])
        history.append(RankerEpoch(0, None, best_score, time.perf_counter() - started))
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        log.info("base encoder: valid recall@1 %.4f", best_score)
    bar = tqdm(total=total, desc="ranker", disable=not progress, unit="step")
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        model.train()
        losses: list[float] = []
        for idx in objective.batches():
            if len(idx) < 2:
                continue
            with torch.autocast(encoder.device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = objective.loss(idx)
                if auxiliary is not None:
                    loss = loss + auxiliary.weight * auxiliary.next_loss()
            losses.append(apply_step(loss, optimizer, scheduler, trainable))
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}")
        model.eval()
        recall: float | None = None
        if cases:
            metrics = evaluate_encoder(encoder, cases, context)
            recall = float(metrics["recall@1"])
            if recall > best_score:
                best_score, best_epoch, best_metrics = recall, epoch, metrics
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            best_epoch = epoch
        history.append(
            RankerEpoch(epoch, float(np.mean(losses)), recall, time.perf_counter() - started)
        )
        log.info("ranker epoch %d: loss %.4f, valid recall@1 %s", epoch, history[-1].loss, recall)
    bar.close()
    if best_state is not None and best_epoch != epochs:
        model.load_state_dict(best_state)  # an earlier epoch, or the base encoder (0)
    model.eval()
    return RankerTraining(tuple(history), best_epoch, len(objective), len(valid_logs), best_metrics)
