"""Fine-tune the shared encoder with a cosine intent head (or, with few rows per intent, fit
the head alone to the base encoder), then calibrate it.

Full fine-tuning of the encoder and the class vectors together (class vectors start at the
base encoder's class centroids), label smoothing, linear warm-up and decay, batches of
similar length (less padding), early stopping on validation accuracy. The same code runs on
CPU and CUDA (bf16 autocast where the hardware has it: ``training.precision``). After
training: temperature scaling and the out-of-scope threshold, both fitted on the
validation rows only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm.auto import tqdm

from retrieval import scoring
from retrieval.encoder import Encoder
from retrieval.intent_head import IntentHead
from training import calibration
from training.args import TrainingArguments
from training.errors import TrainingError
from training.intent_data import OOS_LABEL, IntentDataError
from training.objectives import Auxiliary, length_batches
from training.precision import uses_bf16

log = logging.getLogger(__name__)

MIN_ROWS_FOR_TEMPERATURE = 50
"""Fewer validation rows than this say too little to fit a temperature (it stays 1)."""
GUARD_QUANTILE = 0.01
"""Share of in-scope validation rows the similarity guard may reject: on BANKING77-OOS it
took OOD-OOS recall from 93.4 to 95.0 % for 0.15 point of in-scope accuracy, ID-OOS
unchanged (BENCHMARKS.md)."""
MIN_ROWS_FOR_GUARD = 50
"""Fewer in-scope validation rows than this leave the guard off (``min_similarity`` -1)."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    loss: float
    valid_accuracy: float | None
    seconds: float
    averaged_valid_accuracy: float | None = None
    """The weights' moving average at this epoch (``average_epochs`` > 0)."""
    member: int = 0
    """Which model of a soup (``soup`` > 1) this epoch trained; 0 for the first."""


class WeightAverage:
    """An exponential moving average of ``params``, updated every ``every`` steps over a
    window of about ``window`` steps, that can stand in for them for a while."""

    def __init__(self, params: Sequence[torch.Tensor], window: float, every: int = 2) -> None:
        self.params = list(params)
        self.shadow = [p.detach().clone() for p in self.params]
        self.every = every
        self.weight = min(1.0, every / max(1.0, window))  # of the newest weights
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps % self.every == 0:
            with torch.no_grad():
                for average, param in zip(self.shadow, self.params, strict=True):
                    average.lerp_(param.detach(), self.weight)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The parameters hold the average inside the block, their own values after it."""
        with torch.no_grad():
            own = [p.detach().clone() for p in self.params]
            for param, average in zip(self.params, self.shadow, strict=True):
                param.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, value in zip(self.params, own, strict=True):
                    param.copy_(value)


@dataclass(frozen=True)
class IntentTraining:
    head: IntentHead
    history: tuple[EpochRecord, ...]
    best_epoch: int
    train_rows: int
    epochs: int
    batch_size: int
    valid_texts: tuple[str, ...]
    valid_labels: tuple[str, ...]
    validated_head: IntentHead | None = None
    """When :attr:`head` was fitted again with the validation rows (``refit_head``): the
    head before that, the one whose figures on them are a fair estimate."""

    @property
    def valid_rows(self) -> int:
        return len(self.valid_texts)


def average_weights(
    members: Sequence[tuple[dict[str, torch.Tensor], torch.Tensor]],
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The uniform average of several (encoder state, class vectors) that share a start.
    A tensor the same in all (frozen word embeddings, integer buffers) is the first's,
    exactly: an average of equal floats can differ from them in the last bit."""
    states = [state for state, _ in members]
    averaged = {
        key: (
            torch.stack([state[key] for state in states]).mean(dim=0)
            if value.is_floating_point()
            and not all(torch.equal(value, state[key]) for state in states[1:])
            else value
        )
        for key, value in states[0].items()
    }
    return averaged, torch.stack([vectors for _, vectors in members]).mean(dim=0)


def encoder_groups(model: Any, lr: float, layer_decay: float) -> list[dict[str, Any]]:
    """The encoder's trainable parameters as optimizer groups: with ``layer_decay`` < 1,
    transformer layer i of L trains at ``lr * layer_decay ** (L - 1 - i)`` and the
    embeddings at ``lr * layer_decay ** L`` (layer-wise decay, as in ULMFiT and ELECTRA);
    with 1, one group at ``lr``."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if layer_decay == 1:
        return [{"params": trainable, "lr": lr}]
    if not hasattr(getattr(model, "encoder", None), "layer"):
        raise TrainingError("layer_decay needs a BERT-style encoder (encoder.layer)")
    stack = list(model.encoder.layer)
    depth = {id(p): i for i, layer in enumerate(stack) for p in layer.parameters()}
    groups: dict[int, list[Any]] = {}
    for p in trainable:
        # the embeddings (and anything outside the stack) sit below the lowest layer
        groups.setdefault(len(stack) - 1 - depth.get(id(p), -1), []).append(p)
    return [
        {"params": params, "lr": lr * layer_decay**below}
        for below, params in sorted(groups.items())
    ]


def warmup_then_decay(
    optimizer: torch.optim.Optimizer, total: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate rises linearly over the first ``warmup_ratio`` of ``total`` steps,
    then falls linearly to 0 at the last one."""
    warmup = int(total * warmup_ratio)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            (step + 1) / max(1, warmup)
            if step < warmup
            else max(0.0, (total - step) / max(1, total - warmup))
        ),
    )


def apply_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    params: Sequence[torch.nn.Parameter],
) -> float:
    """One optimisation step with gradients clipped to norm 1; returns the loss value."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    scheduler.step()
    return float(loss.item())


def supervised_contrastive(
    emb: torch.Tensor, target: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) over a batch of unit embeddings:
    for each row with another row of its intent in the batch, the mean negative
    log-probability of those rows among all the others; 0 when no row has a partner."""
    sims = emb @ emb.T / temperature  # (B, B)
    self_mask = torch.eye(len(emb), dtype=torch.bool, device=emb.device)
    sims = sims.masked_fill(self_mask, float("-inf"))
    log_prob = sims - torch.logsumexp(sims, dim=1, keepdim=True)
    partners = (target[:, None] == target[None, :]) & ~self_mask
    counts = partners.sum(dim=1)
    anchors = counts > 0
    if not bool(anchors.any()):
        return emb.sum() * 0.0
    per_row = -(log_prob.masked_fill(~partners, 0.0).sum(dim=1)[anchors]) / counts[anchors]
    return per_row.mean()


def split_validation(
    labels: Sequence[str], fraction: float, seed: int, min_per_class: int = 5
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Stratified carve-out: about ``fraction`` of each class with at least
    ``min_per_class`` rows goes to validation (at least one row). -> (train idx, valid idx)."""
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    train: list[int] = []
    valid: list[int] = []
    for label in sorted(set(labels)):
        rows = np.flatnonzero(y == label)
        rng.shuffle(rows)
        take = max(1, round(len(rows) * fraction)) if len(rows) >= min_per_class else 0
        valid.extend(rows[:take].tolist())
        train.extend(rows[take:].tolist())
    return np.asarray(sorted(train), dtype=np.int64), np.asarray(sorted(valid), dtype=np.int64)


def planned_epochs(
    labels: Sequence[str], args: TrainingArguments, oos_label: str = OOS_LABEL
) -> int:
    """The fine-tuning epochs :func:`train_intents` plans for these rows with a carved-out
    validation set (0: the encoder is kept and the head fitted alone)."""
    train_idx, valid_idx = split_validation(labels, args.valid_fraction, args.seed)
    train = [labels[i] for i in train_idx]
    in_scope = [label for label in train if label != oos_label]
    return args.epochs_for(
        len(train), in_scope=(len(in_scope), len(set(in_scope))), valid_rows=len(valid_idx)
    )


def probe_head(
    class_vectors: torch.nn.Parameter,
    embeddings: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
    args: TrainingArguments,
) -> None:
    """Fit the class vectors (from the centroids) to the base encoder's embeddings (N, D)
    of the training rows, full batch: a linear probe, the head of an encoder that is not
    fine-tuned. Without label smoothing: fitted to convergence, its confidence tracked its
    accuracy on held-out rows (BENCHMARKS.md)."""
    emb = torch.tensor(embeddings, device=class_vectors.device)
    target = torch.tensor(y, device=class_vectors.device)
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam([class_vectors], lr=args.probe_learning_rate)
    for _ in range(args.probe_steps):
        logits = emb @ (args.logit_scale * torch.nn.functional.normalize(class_vectors, dim=-1)).T
        loss = loss_fn(logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    class_vectors.grad = None


def train_intents(
    encoder: Encoder,
    texts: Sequence[str],
    labels: Sequence[str],
    args: TrainingArguments,
    *,
    valid_texts: Sequence[str] | None = None,
    valid_labels: Sequence[str] | None = None,
    oos_label: str = OOS_LABEL,
    progress: bool = True,
    auxiliary: Auxiliary | None = None,
    initial_vectors: Mapping[str, npt.NDArray[np.float32]] | None = None,
) -> IntentTraining:
    """Fine-tune ``encoder`` in place on (text, intent) rows, or leave it as it is and fit
    the head alone when there are few rows per intent (``fine_tune_min_rows``); return the
    calibrated head.

    Without ``valid_*`` a stratified validation set is carved out of the training rows.
    Rows labelled ``oos_label`` train an out-of-scope class. ``auxiliary``: a second
    objective of the same encoder (the chat logs' ranking), one batch of it added to each
    step's loss. ``initial_vectors``: class vectors of an earlier model by intent (a
    continued training, ``training.continual``); its intents start there, new ones at their
    centroid.
    """
    if len(texts) != len(labels) or not texts:
        raise IntentDataError(
            f"expected as many labels as texts (> 0), got {len(texts)} / {len(labels)}"
        )
    seed_everything(args.seed)
    carved = valid_texts is None or valid_labels is None
    if valid_texts is None or valid_labels is None:
        train_idx, valid_idx = split_validation(labels, args.valid_fraction, args.seed)
        valid_texts = [texts[i] for i in valid_idx]
        valid_labels = [labels[i] for i in valid_idx]
        texts = [texts[i] for i in train_idx]
        labels = [labels[i] for i in train_idx]
    names = tuple(sorted(set(labels)))
    in_scope = [n for n in names if n != oos_label]
    if len(in_scope) < 2:
        raise IntentDataError(f"expected at least 2 intents, got {len(in_scope)}: {in_scope}")
    known = {*names, oos_label}  # oos validation rows tune the threshold even with no oos class
    unseen = sorted(set(valid_labels) - known)
    if unseen:
        raise IntentDataError(f"validation rows have intents with no training rows: {unseen[:5]}")
    index = {n: i for i, n in enumerate(names)}
    y = np.asarray([index[label] for label in labels], dtype=np.int64)
    # -1: an out-of-scope validation row when training has no out-of-scope class
    vy = np.asarray([index.get(label, -1) for label in valid_labels], dtype=np.int64)
    oos_class = index.get(oos_label)

    # Class vectors start at each class's centroid in the base encoder's space.
    base = encoder.encode(texts)  # (N, D)
    centroids = np.stack([base[y == c].mean(axis=0) for c in range(len(names))])  # (C, D)
    for c, name in enumerate(names):
        if initial_vectors is not None and name in initial_vectors:
            centroids[c] = initial_vectors[name]  # normalised below, as the head uses it
    class_vectors = torch.nn.Parameter(
        torch.tensor(scoring.normalize(centroids), device=encoder.device)
    )
    in_scope_rows = int((y != oos_class).sum()) if oos_class is not None else len(y)
    epochs = args.epochs_for(
        len(texts), in_scope=(in_scope_rows, len(in_scope)), valid_rows=len(vy)
    )
    if epochs == 0:
        if args.soup > 1 or args.average_epochs > 0:
            log.warning("the encoder is not fine-tuned: soup and average_epochs do nothing")
        if args.probe_steps:
            probe_head(class_vectors, base, y, args)
    model = encoder.model
    if args.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    batch_size = args.batch_size_for(len(texts))
    steps_per_epoch = math.ceil(len(texts) / batch_size)
    total = max(1, steps_per_epoch * epochs)

    def optimizer_and_schedule() -> tuple[
        torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler
    ]:
        optimizer = torch.optim.AdamW(
            [
                *encoder_groups(model, args.learning_rate, args.layer_decay),
                {"params": [class_vectors], "lr": args.head_learning_rate},
            ],
            weight_decay=args.weight_decay,
        )
        if auxiliary is not None and auxiliary.parameters():
            optimizer.add_param_group(
                {"params": auxiliary.parameters(), "lr": args.head_learning_rate}
            )
        return optimizer, warmup_then_decay(optimizer, total, args.warmup_ratio)

    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    use_amp = uses_bf16(args.precision, encoder.device)
    rng = np.random.default_rng(args.seed)
    lengths = np.asarray(
        [len(ids) for ids in encoder.tokenizer(list(texts), truncation=True)["input_ids"]],
        dtype=np.int64,
    )

    def class_weights() -> torch.Tensor:
        return args.logit_scale * torch.nn.functional.normalize(class_vectors, dim=-1)

    def head_weight() -> npt.NDArray[np.float32]:
        """The class weights as the head stores them (C, D)."""
        out: npt.NDArray[np.float32] = class_weights().detach().float().cpu().numpy()
        return out

    def valid_logits() -> npt.NDArray[np.float32]:
        out: npt.NDArray[np.float32] = encoder.encode(valid_texts) @ head_weight().T  # (V, C)
        return out

    def valid_accuracy() -> float | None:
        if not (vy >= 0).any():
            return None
        return float((valid_logits()[vy >= 0].argmax(axis=1) == vy[vy >= 0]).mean())

    def snapshot() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return (
            {k: v.detach().clone() for k, v in model.state_dict().items()},
            class_vectors.detach().clone(),
        )

    history: list[EpochRecord] = []
    best_epoch = 0
    soup = args.soup if epochs > 0 else 1  # with no training, every member is the start
    initial = snapshot() if soup > 1 else None  # where every member of a soup starts
    members: list[tuple[dict[str, torch.Tensor], torch.Tensor]] = []
    bar = tqdm(total=total * soup, desc="intents", disable=not progress or not epochs, unit="step")
    for member in range(soup):
        if member and initial is not None:  # the same start, another seed
            model.load_state_dict(initial[0])
            with torch.no_grad():
                class_vectors.copy_(initial[1])
            seed_everything(args.seed + member)
            rng = np.random.default_rng(args.seed + member)
        optimizer, scheduler = optimizer_and_schedule()
        averaged = (
            WeightAverage([*trainable, class_vectors], args.average_epochs * steps_per_epoch)
            if args.average_epochs > 0
            else None
        )
        best: tuple[float, int, dict[str, torch.Tensor], torch.Tensor] | None = None
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            model.train()
            losses: list[float] = []
            for idx in length_batches(lengths, batch_size, rng):
                features = encoder.tokenize([texts[i] for i in idx])
                target = torch.tensor(y[idx], device=encoder.device)
                with torch.autocast(encoder.device.type, dtype=torch.bfloat16, enabled=use_amp):
                    emb = encoder.embed(features)  # (B, D), unit length
                    logits = emb.float() @ class_weights().T  # (B, C)
                    loss = loss_fn(logits, target)
                    if args.contrastive_weight > 0:
                        # float32 even under bf16 autocast: at temperature 0.1 bf16 rounding
                        # would swamp the differences between similarities
                        with torch.autocast(encoder.device.type, enabled=False):
                            loss = loss + args.contrastive_weight * supervised_contrastive(
                                emb.float(), target, args.contrastive_temperature
                            )
                    if auxiliary is not None:
                        loss = loss + auxiliary.weight * auxiliary.next_loss()
                losses.append(apply_step(loss, optimizer, scheduler, trainable))
                if averaged is not None:
                    averaged.step()
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}")
            model.eval()
            accuracy = valid_accuracy()
            score = accuracy if accuracy is not None else float(epoch)
            improved = best is None or score > best[0]
            if improved:
                best = (score, epoch, *snapshot())
            averaged_accuracy: float | None = None
            if averaged is not None and accuracy is not None:
                with averaged.swapped_in():
                    averaged_accuracy = valid_accuracy()
                    if averaged_accuracy is not None and best and averaged_accuracy > best[0]:
                        best, improved = (averaged_accuracy, epoch, *snapshot()), True
            history.append(
                EpochRecord(
                    epoch,
                    float(np.mean(losses)),
                    accuracy,
                    time.perf_counter() - started,
                    averaged_accuracy,
                    member,
                )
            )
            log.info(
                "epoch %d: loss %.4f, valid accuracy %s (averaged weights %s)",
                epoch,
                history[-1].loss,
                accuracy,
                averaged_accuracy,
            )
            if not improved and best is not None and epoch - best[1] >= args.patience:
                log.info("early stop after epoch %d (best %d)", epoch, best[1])
                break
        if best is not None:
            _, epoch_kept, state, vectors = best
            model.load_state_dict(state)
            with torch.no_grad():
                class_vectors.copy_(vectors)
            best_epoch = best_epoch or epoch_kept  # the first member's
        if initial is not None:
            members.append(snapshot())
    bar.close()
    if members:
        soup_state, soup_vectors = average_weights(members)
        model.load_state_dict(soup_state)
        with torch.no_grad():
            class_vectors.copy_(soup_vectors)
        model.eval()
        log.info("soup of %d models: valid accuracy %s", len(members), valid_accuracy())
    model.eval()

    weight = head_weight()
    head = IntentHead(
        labels=names,
        weight=weight,
        bias=np.zeros(len(names), dtype=np.float32),
        temperature=1.0,
        threshold=0.0,
        oos_label=oos_label if oos_class is not None else None,
    )
    if len(vy):
        head = calibrated(
            head,
            valid_logits(),
            vy,
            args.max_lost_without_oos,
            fit_temperature=len(vy) >= MIN_ROWS_FOR_TEMPERATURE,
        )
    else:
        # Too few rows to hold any out. The threshold fitted on training rows is optimistic
        # (they were trained on): halve its distance from the uniform confidence 1 / C.
        train_emb = encoder.encode(texts)
        fitted = calibrated(
            head,
            train_emb @ head.weight.T,
            y,
            args.max_lost_without_oos,
            fit_temperature=False,
            similarity_guard=False,  # rows it was trained on are closer than new ones
        )
        uniform = 1.0 / len(fitted.intents)
        head = replace(fitted, threshold=uniform + (fitted.threshold - uniform) / 2)
    validated_head = None
    refit = epochs == 0 and carved and args.refit_head and args.probe_steps
    if refit and (vy >= 0).any():
        # The head alone costs seconds: fit it again with the carved-out rows too, keeping
        # the temperature and thresholds chosen on them (Banking77 and Bitext at 10 rows
        # an intent: +1.2 and +0.9 points; BENCHMARKS.md).
        validated_head = head
        probe_head(
            class_vectors,
            np.concatenate([base, encoder.encode(valid_texts)[vy >= 0]]),
            np.concatenate([y, vy[vy >= 0]]),
            args,
        )
        head = replace(head, weight=head_weight())
    return IntentTraining(
        head,
        tuple(history),
        best_epoch,
        len(texts),
        epochs,
        batch_size,
        tuple(valid_texts),
        tuple(valid_labels),
        validated_head,
    )


def calibrated(
    head: IntentHead,
    logits: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    max_lost_without_oos: float,
    *,
    fit_temperature: bool = True,
    similarity_guard: bool = True,
) -> IntentHead:
    """Fit the temperature and the out-of-scope threshold on validation logits (V, C), and
    (``similarity_guard``, with at least :data:`MIN_ROWS_FOR_GUARD` in-scope rows) the
    ``min_similarity`` under which only :data:`GUARD_QUANTILE` of in-scope rows fall, and
    no larger share of right answers than the threshold may reject (none without
    out-of-scope data, by default).

    ``labels`` index ``head.labels``; -1 marks an out-of-scope row when the head has no
    out-of-scope class.
    """
    known = labels >= 0
    temperature = (
        calibration.fit_temperature(logits[known], labels[known]) if fit_temperature else 1.0
    )
    probs = scoring.softmax(logits, temperature)
    oos = head.oos_class
    is_oos = labels == oos if oos is not None else ~known
    in_probs = head.in_scope(probs)
    confidence = in_probs.max(axis=1)
    in_labels = labels if oos is None else labels - (labels > oos)
    correct = (in_probs.argmax(axis=1) == in_labels) & ~is_oos
    max_lost = 1.0
    if is_oos.any():
        oos_confidence = confidence[is_oos]
    else:  # no out-of-scope data: each intent in turn plays the unknown one
        oos_confidence = calibration.held_out_confidence(
            head.in_scope(logits)[~is_oos], in_labels[~is_oos], temperature
        )
        max_lost = max_lost_without_oos
    threshold = calibration.choose_threshold(
        confidence[~is_oos], correct[~is_oos], oos_confidence, max_lost, 1.0 / in_probs.shape[1]
    )
    min_similarity = -1.0
    if similarity_guard and int((~is_oos).sum()) >= MIN_ROWS_FOR_GUARD:
        min_similarity = calibration.choose_min_similarity(
            head.similarity(logits[~is_oos]), correct[~is_oos], GUARD_QUANTILE, max_lost
        )
    return replace(
        head, temperature=temperature, threshold=threshold, min_similarity=min_similarity
    )
