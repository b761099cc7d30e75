"""``frontdesk train``: a bot folder (+ historical dialogues) -> a published model bundle."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bot.definition import BOT_FILE, load_bot
from bot.engine import DEFAULT_RETRIEVAL
from bot.rasa_import import find_rasa_files
from bot.types import BotDefinition
from retrieval import bundle as bundle_files
from retrieval.chatlog import ChatLog, ReadProblem, read_logs
from retrieval.context import ContextEncoding
from retrieval.encoder import Encoder
from retrieval.index import DialogueIndex, IndexedTurn
from retrieval.intent_head import IntentHead
from retrieval.pairs import dialogue_pairs
from retrieval.ranking import ReplyCalibration
from retrieval.redact import RedactionRules, Redactor
from retrieval.registry import Registry
from retrieval.support import SUPPORT_FILE, IntentSupport
from training.args import TrainingArguments, load_base_encoder
from training.continual import (
    Start,
    carried_logs,
    replay,
    write_conversations,
    write_logs,
    write_rows,
)
from training.errors import TrainingError
from training.export import export_onnx
from training.intent_data import definition_rows
from training.intents import IntentTraining
from training.joint import JointTraining, train_jointly
from training.outdir import staging_in
from training.precision import resolved as resolved_precision
from training.ranker import RankerArguments
from training.reply_calibration import Paraphrases, fit_reply_calibration
from training.reviewed import REVIEWED_FILE, reviewed_rows, too_few_for_new_intents
from training.support_calibration import fit_support_calibration

log = logging.getLogger(__name__)

DIALOGUES_FILE = "dialogues.jsonl"
TRAINING_ARGS_FILE = "training_args.json"


def bot_digest(bot_dir: Path) -> str:
    """Fingerprint of what a model is trained from: bot.yml, the default dialogues and
    the reviewed examples."""
    digest = hashlib.sha256()
    for name in ("bot.yml", DIALOGUES_FILE, REVIEWED_FILE):
        path = bot_dir / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def logs_digest(sources: Sequence[Path]) -> str:
    """Fingerprint of the chat logs a dialogue index is built from, in the order given: each
    file's bytes, or each file under a folder (sorted by its path inside it)."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(b"source\0")
        files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
        for path in files:
            name = path.relative_to(source).as_posix() if path != source else ""
            if path.is_file():  # streamed: an export may be larger than memory
                with path.open("rb") as handle:
                    content = hashlib.file_digest(handle, "sha256").hexdigest()
            else:
                content = "missing"
            digest.update(f"{name}\0{content}\0".encode())
    return digest.hexdigest()


def is_stale(
    bot_dir: Path,
    registry: Registry,
    args: TrainingArguments | None = None,
    logs: Sequence[Path] | None = None,
) -> bool:
    """True when there is no current model, it was trained from another bot folder state,
    it is in an older bundle format, its dialogue index was built from other chat logs than
    ``logs`` (default: the bot folder's ``dialogues.jsonl``) hold now, or (given ``args``)
    it was trained with other training arguments than these (the device aside: it does not
    change the model)."""
    current = registry.current_path()
    if current is None:
        return True
    try:
        manifest = json.loads((current / bundle_files.MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    if manifest.get("format") != bundle_files.FORMAT:
        return True  # trained by an older Frontdesk: this one cannot load it
    if manifest.get("bot_digest") != bot_digest(bot_dir):
        return True
    saved_logs = manifest.get("logs_digest")
    if saved_logs is None:  # a bundle from before logs were fingerprinted
        if logs is not None:
            return True  # cannot tell what it was indexed from
    elif saved_logs != logs_digest(_default_logs(bot_dir) if logs is None else logs):
        return True
    if args is None:
        return False
    fine_tuned = bool(manifest.get("epochs"))
    return _trained_otherwise(manifest.get("training_args") or {}, args, fine_tuned=fine_tuned)


BEFORE_THE_FIELD = {
    "fine_tune_min_rows": 0,
    "fine_tune_min_valid_rows": 0,
    "probe_steps": 0,
    "refit_head": False,
    "ranker_epochs": 0,
}
"""What a Frontdesk that predates these training arguments did: it fine-tuned whatever
the rows, ``epochs`` 0 kept the intents' centroids, a head was never fitted again with
the validation rows, and the chat logs were indexed, never trained on."""


HOW_TO_CONTINUE = {
    "replay_per_intent",
    "continue_budget",
    "continue_lr_scale",
    "new_intent_min_examples",
}
"""Arguments of how a training continues from an earlier model, not of what it learns:
changing them does not make the current model stale."""

ONLY_FOR_A_KEPT_ENCODER = {"refit_head"}
"""Arguments that change nothing when the encoder was fine-tuned."""


def _trained_otherwise(
    saved: Mapping[str, Any], args: TrainingArguments, *, fine_tuned: bool = False
) -> bool:
    """Whether ``args`` asks for another model than the manifest's ``saved`` arguments
    describe; an argument a bundle predates counts as what was done before it existed
    (its default, unless :data:`BEFORE_THE_FIELD` says otherwise). For a ``fine_tuned``
    bundle the arguments of :data:`ONLY_FOR_A_KEPT_ENCODER` are not compared."""
    ignored = {"device", *HOW_TO_CONTINUE, *(ONLY_FOR_A_KEPT_ENCODER if fine_tuned else ())}
    return any(
        saved.get(f.name, BEFORE_THE_FIELD.get(f.name, f.default)) != getattr(args, f.name)
        for f in fields(TrainingArguments)
        if f.name not in ignored
    )


@dataclass(frozen=True)
class TrainResult:
    version: str
    path: Path
    intents: int
    examples: int
    indexed_turns: int
    log_problems: tuple[ReadProblem, ...]
    seconds: float
    epochs: int
    """Fine-tuning epochs planned; 0: the encoder was not fine-tuned (few examples an
    intent, or ``epochs`` 0), only the intent head fitted to it."""
    ranker_trained: bool = False
    """Whether the encoder was also fine-tuned to rank the chat logs' replies."""
    reply_threshold: float | None = None
    """The probability from which the server sends a past reply with this bundle: bot.yml's
    ``thresholds.retrieval`` where set, else the one fitted in training."""
    reviewed_examples: int = 0
    """Reviewed examples (``reviewed.jsonl``) trained on beside bot.yml's."""
    waiting_intents: tuple[tuple[str, int], ...] = ()
    """Reviewed examples of intents bot.yml does not declare: (intent, examples)."""
    report: Path | None = None
    """The bundle's training report (``reports/training.md``, plots beside it); None when
    it could not be written (logged)."""


def train_bot(
    bot_dir: Path,
    registry: Registry,
    *,
    logs: list[Path] | None = None,
    args: TrainingArguments | None = None,
    base_model: Path | None = None,
    progress: bool = True,
    ranker_args: RankerArguments | None = None,
    start: Start | None = None,
    make_current: bool = True,
) -> TrainResult:
    """Fine-tune one encoder on the bot's intents and the chat logs' replies
    (``training.joint``), index the logs, fit the reply calibration, and publish the bundle
    (as ``current`` unless ``make_current`` is False: a candidate for the gate).
    ``ranker_args``: the ranking objective's arguments (default: from ``args``).
    ``start``: an earlier bundle to continue from (``training.continual``): its encoder
    weights and class vectors, and a sample of its rows replayed."""
    started = time.perf_counter()
    args = args or TrainingArguments()
    definition = load_bot(bot_dir)
    texts, labels = definition_rows(definition)
    reviewed = reviewed_rows(bot_dir, (intent.name for intent in definition.intents))
    texts, labels = [*texts, *reviewed.texts], [*labels, *reviewed.labels]
    for intent, count in sorted(reviewed.waiting.items()):
        log.warning(
            "%d reviewed examples of %r wait for bot.yml to declare that intent (with a "
            "response) before they are trained",
            count,
            intent,
        )
    replayed = 0
    run_args = args
    if start is not None:
        few = too_few_for_new_intents(labels, start.class_vectors, args.new_intent_min_examples)
        if few:
            shown = ", ".join(f"{name} ({n})" for name, n in few.items())
            raise TrainingError(
                f"new intents need at least {args.new_intent_min_examples} examples (bot.yml's "
                f"and reviewed ones) before they are trained; too few: {shown}. Add examples "
                "or review more (`frontdesk tags review`), or train with --from-scratch"
            )
        defined = {intent.name for intent in definition.intents}
        texts, labels, replayed = replay(
            texts,
            labels,
            start.rows,
            per_intent=args.replay_per_intent,
            keep=defined.__contains__,
            seed=args.seed,
        )
        budget = max(1, round(args.examples_budget * args.continue_budget))
        lr = args.learning_rate * args.continue_lr_scale
        run_args = replace(args, examples_budget=budget, learning_rate=lr)

    sources = list(logs) if logs is not None else _default_logs(bot_dir)
    digest = logs_digest(sources)  # before reading: a log that grows meanwhile retrains next time
    problems: list[ReadProblem] = []
    chat_logs: list[ChatLog] = []
    for source in sources:
        result = read_logs(source)
        chat_logs.extend(result.logs)
        problems.extend(result.problems)
    carried = carried_logs(start, chat_logs) if start is not None else []
    chat_logs.extend(carried)
    spec = definition.redaction
    rules = RedactionRules(spec.order_number, spec.keep, spec.phone_region)
    redact = Redactor(rules)
    pairs = dialogue_pairs(chat_logs, redact=redact)

    device = args.resolved_device()
    base = start.encoder if start is not None else base_model
    encoder = load_base_encoder(base, device, args.max_length, args.layers)
    ranker_args = ranker_args or RankerArguments(
        epochs=args.ranker_epochs,
        context=args.context,
        device=args.device,
        precision=args.precision,
        max_length=args.max_length,
        seed=args.seed,
    )
    if start is not None:
        budget = max(1, round(ranker_args.pairs_budget * args.continue_budget))
        ranker_args = replace(ranker_args, pairs_budget=budget)
    joint = train_jointly(
        encoder,
        texts,
        labels,
        chat_logs,
        run_args,
        ranker_args,
        redact=redact,
        progress=progress,
        initial_vectors=start.class_vectors if start is not None else None,
    )
    training = joint.intents
    head = training.head

    context = ContextEncoding(args.context)
    index = build_index(encoder, pairs, context=context)
    # conversations the encoder was not trained on are held out in turn (each queries the
    # index without its own turns); all of them when it saw none
    held_out = joint.ranker_valid_ids or {c.id for c in chat_logs}
    calibration = fit_reply_calibration(
        encoder, index, pairs, held_out, context, paraphrases=paraphrases_of(definition)
    )

    with staging_in(registry.root) as staging:
        manifest = {
            "format": bundle_files.FORMAT,
            "bot": definition.name,
            "bot_digest": bot_digest(bot_dir),
            "created_at": datetime.now(UTC).isoformat(),
            "intents": list(head.intents),
            "examples": len(texts),
            "indexed_turns": len(index),
            "dialogue_sources": [str(s) for s in sources],
            "logs_digest": digest,
            "device": device,
            "precision": resolved_precision(args.precision, device),
            "training_args": asdict(args),
            "epochs": training.epochs,
            "best_epoch": training.best_epoch,
            "head_refitted": training.validated_head is not None,
            "history": [asdict(r) for r in training.history],
            "ranker": joint.ranker_manifest(),
            "reply_calibration": calibration.to_json(),
            "context_encoding": context.to_json(),
            "redaction": {
                "order_number": rules.order_number,
                "keep": list(rules.keep),
                "phone_region": rules.phone_region,
            },
            "continued_from": start.version if start is not None else None,
            "replayed_rows": replayed,
            "carried_conversations": len(carried),
            "metrics": training_metrics(encoder, training, joint),
        }
        save_bundle(staging, encoder=encoder, head=head, index=index, args=args, manifest=manifest)
        intent_support(encoder, definition, head.intents).save(staging / SUPPORT_FILE)
        snapshot_bot(bot_dir, staging / bundle_files.BOT_DIR)
        # rows a head was fitted again on (a refit) are learnt from, not held out
        held_rows = training.valid_texts if training.validated_head is None else ()
        write_rows(staging, texts, labels, held_rows, redact=redact)
        held = joint.ranker_valid_ids if joint.ranker is not None else frozenset()
        trained = [c.id for c in chat_logs if c.id not in held] if joint.ranker else []
        write_conversations(staging, trained, sorted(held))
        write_logs(staging, chat_logs, redact=redact)
        from training.bundle_report import write_bundle_report  # matplotlib: when training only

        report = write_bundle_report(
            staging,
            definition=definition,
            args=args,
            intents=training,
            logs=chat_logs,
            pairs=pairs,
            held_out=held_out,
        )
        version = registry.publish(staging, make_current=make_current)
    return TrainResult(
        version=version,
        path=registry.root / version,
        intents=len(head.intents),
        examples=len(texts),
        indexed_turns=len(index),
        log_problems=tuple(problems),
        seconds=time.perf_counter() - started,
        epochs=training.epochs,
        ranker_trained=joint.ranker is not None and joint.ranker.note is None,
        reply_threshold=served_reply_threshold(definition, calibration),
        report=registry.root / version / report if report is not None else None,
        reviewed_examples=len(reviewed.texts),
        waiting_intents=tuple(sorted(reviewed.waiting.items())),
    )


def training_metrics(
    encoder: Encoder, training: IntentTraining, joint: JointTraining
) -> dict[str, float]:
    """The figures ``frontdesk models list`` shows of a bundle: intent accuracy on the
    rows training held out (of the head before a refit on them), and recall@1 on the
    conversations the ranking objective held out, where there were any."""
    metrics: dict[str, float] = {}
    head = training.validated_head or training.head
    known = [i for i, y in enumerate(training.valid_labels) if y in head.intents]
    if known:
        probs, _ = head.predict(encoder.encode([training.valid_texts[i] for i in known]))
        names = head.intents
        hits = [
            names[int(j)] == training.valid_labels[i]
            for i, j in zip(known, probs.argmax(1), strict=True)
        ]
        metrics["intent_accuracy"] = float(np.mean(hits))
    ranker = joint.ranker
    if ranker is not None and ranker.valid_metrics and "recall@1" in ranker.valid_metrics:
        metrics["recall@1"] = float(ranker.valid_metrics["recall@1"])
    return metrics


def snapshot_bot(bot_dir: Path, out: Path) -> None:
    """Copy the bot definition a bundle is trained for into it (``bot.yml``, or a Rasa
    project's NLU and domain files), so that the bundle serves after bot.yml changes, a
    rollback included (``channels.runtime``). Chat logs and actions are not copied."""
    out.mkdir(parents=True, exist_ok=True)
    if (bot_dir / BOT_FILE).is_file():
        shutil.copy2(bot_dir / BOT_FILE, out / BOT_FILE)
        return
    rasa = find_rasa_files(bot_dir)
    if rasa is None:
        return
    for path in rasa:
        if path is not None:
            target = out / path.relative_to(bot_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def served_reply_threshold(definition: BotDefinition, calibration: ReplyCalibration) -> float:
    """The past-reply threshold the server applies with this bot and calibration."""
    if definition.thresholds.retrieval is not None:
        return definition.thresholds.retrieval
    return calibration.threshold if calibration.threshold is not None else DEFAULT_RETRIEVAL


def intent_support(
    encoder: Encoder, definition: BotDefinition, intents: Sequence[str]
) -> IntentSupport:
    """The bot's examples and answers embedded for :class:`IntentSupport`, columns in the
    order of ``intents`` (the head's)."""
    paraphrases = paraphrases_of(definition)
    column = {name: i for i, name in enumerate(intents)}
    rows = [i for i, label in enumerate(paraphrases.labels) if label in column]
    examples = encoder.encode([paraphrases.texts[i] for i in rows])
    labels = np.asarray([column[paraphrases.labels[i]] for i in rows], dtype=np.int64)
    answered = np.asarray([name in paraphrases.answers for name in intents], dtype=bool)
    answers = np.zeros((len(intents), encoder.dim), dtype=np.float32)
    if answered.any():
        texts = [paraphrases.answers[name] for name in intents if name in paraphrases.answers]
        answers[answered] = encoder.encode(texts)
    support = IntentSupport(examples, labels, answers, answered, tuple(intents))
    return replace(support, calibration=fit_support_calibration(support))


def paraphrases_of(definition: BotDefinition) -> Paraphrases:
    """A bot's examples with the first text each intent answers with, for the reply
    calibration (intents that act or hand over have no answer text there)."""
    texts, labels = definition_rows(definition)
    answers: dict[str, str] = {}
    for intent in definition.intents:
        response = definition.response_for(intent)
        plain = intent.action is None and not intent.escalate
        if response is not None and plain and intent.name != definition.human_intent:
            answers[intent.name] = response.variants[0].text
    return Paraphrases(texts, labels, answers)


def build_index(
    encoder: Encoder,
    pairs: Sequence[IndexedTurn],
    kind: str = "auto",
    context: ContextEncoding | None = None,
) -> DialogueIndex:
    """Embed every pair's context (as ``context`` reads windows; joint by default) and each
    distinct reply once, and index them."""
    index = DialogueIndex(encoder.dim, kind=kind)  # type: ignore[arg-type]
    if pairs:
        contexts = (context or ContextEncoding()).encode(encoder.encode, [p.context for p in pairs])
        distinct = sorted({p.reply for p in pairs})
        row = {text: i for i, text in enumerate(distinct)}
        reply_emb = encoder.encode(distinct)
        index.add(list(pairs), contexts, reply_emb[[row[p.reply] for p in pairs]])
    return index


def save_bundle(
    folder: Path,
    *,
    encoder: Encoder,
    head: IntentHead,
    index: DialogueIndex,
    args: TrainingArguments | RankerArguments,
    manifest: dict[str, object],
) -> None:
    """Write every file of a bundle into ``folder`` (the encoder also as ONNX)."""
    encoder.save(folder / bundle_files.ENCODER_DIR)
    export_onnx(encoder, folder / bundle_files.ENCODER_DIR)
    head.save(folder / bundle_files.HEAD_FILE)
    index.save(folder / bundle_files.INDEX_DIR)
    args.save(folder / TRAINING_ARGS_FILE)
    (folder / bundle_files.MANIFEST).write_text(
        json.dumps(manifest, indent=2) + "\n", encoding="utf-8"
    )


def _default_logs(bot_dir: Path) -> list[Path]:
    path = bot_dir / DIALOGUES_FILE
    return [path] if path.is_file() else []
