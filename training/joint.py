"""One encoder, two objectives: the bot's intents and the chat logs' replies.

The served bundle reads one encoder pass per message for both the intent head and the
retrieval of past replies, so ``frontdesk train`` fine-tunes that encoder on both:

- many intent rows (the encoder is fine-tuned for them): the intents' loop drives, and
  each of its steps adds one batch of the ranking loss over the logs' (context -> reply)
  pairs;
- few intent rows but enough pairs: the ranker's loop drives, and each of its steps adds
  one batch of the intents' loss (with class vectors of its own), so the encoder keeps
  telling the intents apart; the served head is then fitted to the tuned encoder;
- too few of both: the base encoder serves, with a head fitted to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from retrieval.chatlog import ChatLog
from retrieval.context import ContextEncoding
from retrieval.encoder import Encoder
from training.args import TrainingArguments
from training.dialogue_eval import RankingCase
from training.intents import IntentTraining, planned_epochs, train_intents
from training.objectives import IntentObjective
from training.ranker import (
    RankerArguments,
    RankerEpoch,
    RankerTraining,
    evaluate_encoder,
    ranking_data,
    split_conversations,
    train_ranker,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JointTraining:
    intents: IntentTraining
    ranker: RankerTraining | None
    """None: the logs were not trained on (too few pairs)."""
    driver: str
    """Whose loop drove: ``intents``, ``ranker`` or ``none`` (no fine-tuning)."""
    ranker_valid_ids: frozenset[str] = frozenset()
    """Conversations held out from the ranking objective."""

    def ranker_manifest(self) -> dict[str, object]:
        ranker = self.ranker
        return {
            "driver": self.driver,
            "trained": ranker is not None and ranker.note is None,
            "train_pairs": ranker.train_pairs if ranker else 0,
            "valid_conversations": ranker.valid_conversations if ranker else 0,
            "best_epoch": ranker.best_epoch if ranker else None,
            "history": [asdict(r) for r in ranker.history] if ranker else [],
            "valid_metrics": ranker.valid_metrics if ranker else None,
            "note": ranker.note if ranker else None,
        }


def train_jointly(
    encoder: Encoder,
    texts: Sequence[str],
    labels: Sequence[str],
    logs: Sequence[ChatLog],
    args: TrainingArguments,
    ranker_args: RankerArguments,
    *,
    redact: Callable[[str], str] | None = None,
    progress: bool = True,
    initial_vectors: Mapping[str, npt.NDArray[np.float32]] | None = None,
) -> JointTraining:
    """Fine-tune ``encoder`` in place on the intents and the logs as the module says;
    return the calibrated intent head and what the ranking objective did.
    ``initial_vectors``: an earlier model's class vectors (a continued training)."""
    fine_tunes_intents = planned_epochs(labels, args) > 0
    if not logs or ranker_args.epochs == 0:
        return JointTraining(
            train_intents(
                encoder, texts, labels, args, progress=progress, initial_vectors=initial_vectors
            ),
            None,
            "intents" if fine_tunes_intents else "none",
        )
    if fine_tunes_intents:
        rng = np.random.default_rng(ranker_args.seed)
        data = ranking_data(encoder, logs, ranker_args, rng, redact=redact)
        if data.objective is None:
            log.info("%s", data.note)
            intents = train_intents(
                encoder, texts, labels, args, progress=progress, initial_vectors=initial_vectors
            )
            return JointTraining(
                intents, RankerTraining((), 0, data.pairs, 0, None, data.note), "intents"
            )
        before = _valid_metrics(encoder, data.cases, ranker_args)
        intents = train_intents(
            encoder,
            texts,
            labels,
            args,
            progress=progress,
            auxiliary=data.objective,
            initial_vectors=initial_vectors,
        )
        after = _valid_metrics(encoder, data.cases, ranker_args)
        history = []
        if before is not None and after is not None:
            history = [
                RankerEpoch(0, None, float(before["recall@1"]), 0.0),
                RankerEpoch(intents.best_epoch, None, float(after["recall@1"]), 0.0),
            ]
        ranker = RankerTraining(
            tuple(history), intents.best_epoch, len(data.objective), len(data.valid_logs), after
        )
        return JointTraining(
            intents, ranker, "intents", frozenset(c.id for c in data.valid_logs or logs)
        )
    rng = np.random.default_rng(args.seed)
    objective = IntentObjective(
        encoder,
        texts,
        labels,
        scale=args.logit_scale,
        batch_size=min(ranker_args.batch_size, max(2, len(texts))),
        rng=rng,
        label_smoothing=args.label_smoothing,
    )
    ranker = train_ranker(
        encoder, logs, ranker_args, redact=redact, progress=progress, auxiliary=objective
    )
    if ranker.note is not None:
        log.info("%s", ranker.note)
    intents = train_intents(
        encoder, texts, labels, args, progress=progress, initial_vectors=initial_vectors
    )
    trained = ranker.note is None
    valid_ids = _held_out_ids(logs, ranker_args) if ranker.valid_conversations else frozenset()
    return JointTraining(intents, ranker, "ranker" if trained else "none", valid_ids)


def _valid_metrics(
    encoder: Encoder, cases: Sequence[RankingCase], args: RankerArguments
) -> dict[str, float | int] | None:
    if not cases:
        return None
    return evaluate_encoder(encoder, cases, ContextEncoding(args.context))


def _held_out_ids(logs: Sequence[ChatLog], args: RankerArguments) -> frozenset[str]:
    """The conversations :func:`train_ranker` held out (all of them when it held out none:
    they were too few to pick an epoch by, and it trained on them too)."""
    _, valid = split_conversations(logs, args.valid_fraction, args.seed)
    return frozenset(c.id for c in (valid or logs))
