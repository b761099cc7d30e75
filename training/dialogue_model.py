"""``frontdesk dialogues index`` and ``eval``: past chats -> a bundle with the fine-tuned
ranker and the FAISS index of their (context -> reply) pairs; the 1-of-100 ranking metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np

from retrieval import bundle as bundle_files
from retrieval.bundle import Bundle
from retrieval.chatlog import ChatLog, ReadProblem, read_logs
from retrieval.context import ContextEncoding
from retrieval.intent_head import IntentHead
from retrieval.pairs import dialogue_pairs
from retrieval.redact import RedactionRules, Redactor
from training.args import load_base_encoder
from training.dialogue_eval import (
    ranking_cases,
    ranking_metrics,
    ranks,
    score_cases_with_index,
)
from training.errors import TrainingError, log_skipped
from training.outdir import check_out, staging_beside
from training.pipeline import build_index, save_bundle
from training.precision import resolved as resolved_precision
from training.ranker import RankerArguments, RankerTraining, split_conversations, train_ranker
from training.reply_calibration import fit_reply_calibration

SERVED_K = bundle_files.REPLIES
"""Replies the server asks the bundle for (``Bundle.analyze``'s ``k``); eval searches as deep."""


@dataclass(frozen=True)
class DialogueModelResult:
    path: Path
    conversations: int
    pairs: int
    reply_groups: int
    index_kind: str
    trained: bool
    """Whether the ranker was fine-tuned (``note`` says why not when it was asked to be)."""
    best_epoch: int | None
    valid_metrics: dict[str, float | int] | None
    seconds: float
    problems: tuple[ReadProblem, ...] = field(default=())
    note: str | None = None


def read_all(sources: Sequence[Path]) -> tuple[list[ChatLog], list[ReadProblem]]:
    logs: list[ChatLog] = []
    problems: list[ReadProblem] = []
    for source in sources:
        result = read_logs(source)
        logs.extend(result.logs)
        problems.extend(result.problems)
    return logs, problems


def index_dialogues(
    sources: Sequence[Path],
    out: Path,
    *,
    train: bool = True,
    rules: RedactionRules | None = None,
    kind: str = "auto",
    args: RankerArguments | None = None,
    base_model: Path | None = None,
    progress: bool = True,
    on_problems: Callable[[Sequence[ReadProblem]], None] | None = None,
) -> DialogueModelResult:
    """Read, redact, (fine-tune the ranker,) index, export; write the bundle to ``out``."""
    started = time.perf_counter()
    args = args or RankerArguments()
    rules = rules or RedactionRules()
    check_out(out)
    logs, problems = read_all(sources)
    (on_problems or log_skipped)(problems)  # before training: it may take minutes
    redact = Redactor(rules)
    if not logs:
        raise TrainingError(f"no conversations in {', '.join(map(str, sources))}")

    device = _device(args.device)
    encoder = load_base_encoder(base_model, device, args.max_length)
    training: RankerTraining | None = None
    if train:
        training = train_ranker(encoder, logs, args, redact=redact, progress=progress)
    pairs = dialogue_pairs(logs, redact=redact)
    if not pairs:
        raise TrainingError("no (context, reply) pairs: expected agent turns after customer turns")
    context = ContextEncoding(args.context)
    index = build_index(encoder, pairs, kind, context)
    _, held_out = split_conversations(logs, args.valid_fraction, args.seed)
    calibration = fit_reply_calibration(
        encoder, index, pairs, {log.id for log in held_out}, context
    )
    head = IntentHead(
        labels=(),
        weight=np.zeros((0, encoder.dim), dtype=np.float32),
        bias=np.zeros(0, dtype=np.float32),
        temperature=1.0,
        threshold=0.0,
    )
    manifest: dict[str, object] = {
        "format": bundle_files.FORMAT,
        "kind": "dialogues",
        "created_at": datetime.now(UTC).isoformat(),
        "dialogue_sources": [str(s) for s in sources],
        "conversations": len(logs),
        "indexed_turns": len(index),
        "reply_groups": len({p.group for p in pairs}),
        "index_kind": index.kind,
        "redaction": {
            "order_number": rules.order_number,
            "keep": list(rules.keep),
            "phone_region": rules.phone_region,
        },
        "device": device,
        "precision": resolved_precision(args.precision, device),
        "ranker_trained": training is not None and training.note is None,
        "ranker_args": asdict(args),
        "best_epoch": training.best_epoch if training else None,
        "history": [asdict(r) for r in training.history] if training else [],
        "valid_metrics": training.valid_metrics if training else None,
        "reply_calibration": calibration.to_json(),
        "context_encoding": context.to_json(),
    }
    with staging_beside(out) as staging:
        save_bundle(staging, encoder=encoder, head=head, index=index, args=args, manifest=manifest)
    return DialogueModelResult(
        path=out,
        conversations=len(logs),
        pairs=len(pairs),
        reply_groups=len({p.group for p in pairs}),
        index_kind=index.kind,
        trained=training is not None and training.note is None,
        best_epoch=training.best_epoch if training else None,
        valid_metrics=training.valid_metrics if training else None,
        seconds=time.perf_counter() - started,
        problems=tuple(problems),
        note=training.note if training else None,
    )


def redaction_of(bundle: Bundle) -> Redactor:
    spec = bundle.manifest.get("redaction") or {}
    return Redactor(
        RedactionRules(
            order_number=spec.get("order_number"),
            keep=tuple(spec.get("keep", ())),
            phone_region=spec.get("phone_region", "US"),
        )
    )


def evaluate_dialogues(
    model: Path | Bundle, sources: Sequence[Path], *, int8: bool = False
) -> tuple[dict[str, float | int], list[ReadProblem]]:
    """The ``dialogues eval`` numbers of ``model`` on the logs at ``sources``. ``model``: a
    bundle loaded as the server loads it (``frontdesk dialogues eval``), or a bundle folder,
    loaded with the encoder's int8 export when ``int8`` (``FRONTDESK_ENCODER_INT8``).

    Scored as the server scores: the bundle's encoder, index and reply calibration, its
    context encoding as served (joint windows cut as :meth:`Bundle.analyze` cuts them,
    fused windows from their turns), the same retrieval depth (``k`` x over-fetch), and
    the contexts as the server reads them, as written; the bundle's redaction applies to
    the replies, as to the ones it indexed."""
    bundle = model if isinstance(model, Bundle) else Bundle.load(model, int8=int8)
    logs, problems = read_all(sources)
    cases = ranking_cases(logs, redact=redaction_of(bundle), redact_contexts=False)
    scores = score_cases_with_index(
        cases,
        bundle.encoder.encode,
        bundle.index,
        bundle.reply_calibration,
        depth=SERVED_K * bundle_files.OVERFETCH,
        encode_contexts=partial(
            bundle.context_encoding.encode, bundle.encoder.encode, serving=True
        ),
    )
    return ranking_metrics(ranks(scores)), problems


def _device(requested: str) -> str:
    from training.args import TrainingArguments

    return TrainingArguments(device=requested).resolved_device()
