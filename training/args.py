"""Training arguments: typed, validated when built, saved next to every trained model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrieval.context import Mode
from training.precision import PRECISIONS

if TYPE_CHECKING:
    from retrieval.encoder import Encoder


@dataclass(frozen=True)
class TrainingArguments:
    epochs: int | None = None
    """None: chosen from the data size (:meth:`epochs_for`)."""
    batch_size: int | None = None
    """None: chosen from the data size (:meth:`batch_size_for`)."""
    learning_rate: float = 6e-5
    layer_decay: float = 1.0
    """Layer-wise learning-rate decay: the top transformer layer trains at
    :attr:`learning_rate`, each one below at this factor of the one above, the embeddings
    below the lowest (1: one rate for all)."""
    head_learning_rate: float = 3e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    label_smoothing: float = 0.1
    logit_scale: float = 20.0
    """Cosine-classifier scale: logits = scale * cos(embedding, class vector)."""
    valid_fraction: float = 0.1
    """Share of each intent's rows carved out for validation when no validation file is given."""
    patience: int = 2
    """Stop after this many epochs without a better validation accuracy."""
    max_lost_without_oos: float = 0.0
    """With no out-of-scope rows to learn from, the out-of-scope threshold may reject at most
    this share of in-scope validation rows that the classifier gets right."""
    freeze_word_embeddings: bool = True
    """Keep the token embedding table fixed: 20 % faster steps on CPU, no loss measured."""
    contrastive_weight: float = 0.0
    """Weight of a supervised contrastive loss (rows of one intent in a batch pulled
    together, others pushed apart) added to the classifier's (0: none)."""
    contrastive_temperature: float = 0.1
    average_epochs: float = 0.0
    """Also keep an exponential moving average of the weights over about this many epochs
    and let validation choose, at each epoch, between it and the weights themselves
    (0: no average)."""
    fine_tune_min_rows: int = 25
    """With automatic epochs, fine-tune the encoder only when the intents have at least
    this many training rows each on average (in-scope rows, after the validation
    carve-out). With fewer (a new bot's handful of examples) the base encoder is kept and
    only the head is fitted to it (:attr:`probe_steps`): on Banking77 and Bitext at 10
    and 20 examples per intent that was more accurate, at 30 even, from 50 fine-tuning
    won (BENCHMARKS.md)."""
    fine_tune_min_valid_rows: int = 50
    """With automatic epochs, fine-tune only with at least this many validation rows: with
    fewer no temperature is fitted, and a fine-tuned model's confidence was off by 11-21 %
    where the head alone's was within 1 % (Bitext, 24-40 validation rows; BENCHMARKS.md)."""
    probe_steps: int = 1000
    """Full-batch steps fitting the head to the base encoder's embeddings when the encoder
    is not fine-tuned (0 epochs): a linear probe (0: each intent's centroid)."""
    probe_learning_rate: float = 1e-2
    refit_head: bool = True
    """When the head is fitted alone and validation rows were carved out of the training
    rows: once the temperature and thresholds are chosen on them, fit the head again on
    all rows (seconds). At 10 rows an intent: Banking77 +1.2 points, Bitext +0.9; at 20:
    +0.3 and +0.1 (BENCHMARKS.md)."""
    examples_budget: int = 40_000
    """Auto epochs: about this many training examples seen in all (3 to 10 epochs)."""
    replay_per_intent: int = 40
    """A training that continues from an earlier model (``training.continual``) mixes up to
    this many of the earlier model's rows of each intent into its own, so that intents the
    new rows lack are not forgotten (Banking77 in 4 stages: 90.8 % at the end with 40 and a
    0.3 learning-rate scale, 88.1 % with 20 and 1.0; BENCHMARKS.md)."""
    continue_budget: float = 0.3
    """A continued training sees about this share of :attr:`examples_budget` (a fresh
    training's): it refines the earlier model instead of training again from the start, in
    well under 40 % of the time (3 epochs at least; BENCHMARKS.md)."""
    continue_lr_scale: float = 0.3
    """A continued training's learning rate, as a share of :attr:`learning_rate`: it moves
    the earlier model less, so it forgets less (BENCHMARKS.md)."""
    new_intent_min_examples: int = 5
    """A training that continues from an earlier model refuses an intent that model did not
    know with fewer examples than this (bot.yml's and reviewed ones, ``training.reviewed``)."""
    ranker_epochs: int | None = None
    """Epochs of the ranking objective over the chat logs' (context -> reply) pairs when
    its loop drives (few intent rows); None: from the number of pairs (1 to 8); 0: the
    logs are indexed with the encoder the intents leave, not trained on."""
    context: Mode = "joint"
    """How the dialogue index reads a context window (``retrieval.context``): ``joint``
    encodes the window as one sequence; ``fused`` sums its turns' embeddings, so serving
    encodes only the new message."""
    soup: int = 1
    """Models trained from seeds ``seed``, ``seed + 1``, ... whose weights and class vectors
    are averaged into one (a uniform model soup: they all start from the same encoder and
    class centroids); the same serving cost as one model for ``soup`` times the training.
    Banking77, two: 93.44 % against 92.99 % for the first alone, ECE 0.95 against 1.36 %;
    another seed alone got 93.51 %, so the gain is about the size of the seed noise
    (BENCHMARKS.md)."""
    layers: int | None = None
    """Fine-tune only the first this many of the base encoder's transformer layers (None:
    all six of MiniLM's): a shallower encoder serves proportionally faster, for some
    accuracy (BENCHMARKS.md)."""
    max_length: int = 128
    seed: int = 13
    device: str = "auto"
    precision: str = "auto"
    """Training arithmetic: ``auto`` (bf16 autocast on CUDA and on CPUs with native bf16,
    float32 elsewhere), ``fp32`` or ``bf16`` (``training.precision``)."""

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs is None or self.epochs >= 0,
            "batch_size": self.batch_size is None or self.batch_size >= 1,
            "soup": self.soup >= 1,
            "probe_steps": self.probe_steps >= 0,
            "fine_tune_min_rows": self.fine_tune_min_rows >= 0,
            "fine_tune_min_valid_rows": self.fine_tune_min_valid_rows >= 0,
            "probe_learning_rate": self.probe_learning_rate > 0,
            "layers": self.layers is None or self.layers >= 1,
            "examples_budget": self.examples_budget >= 1,
            "ranker_epochs": self.ranker_epochs is None or self.ranker_epochs >= 0,
            "replay_per_intent": self.replay_per_intent >= 0,
            "new_intent_min_examples": self.new_intent_min_examples >= 1,
            "continue_budget": 0 < self.continue_budget <= 1,
            "continue_lr_scale": 0 < self.continue_lr_scale <= 1,
            "average_epochs": self.average_epochs >= 0,
            "contrastive_weight": self.contrastive_weight >= 0,
            "contrastive_temperature": self.contrastive_temperature > 0,
            "max_lost_without_oos": 0 <= self.max_lost_without_oos <= 1,
            "learning_rate": self.learning_rate > 0,
            "layer_decay": 0 < self.layer_decay <= 1,
            "head_learning_rate": self.head_learning_rate > 0,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "valid_fraction": 0 <= self.valid_fraction < 1,
            "patience": self.patience >= 1,
            "max_length": self.max_length >= 8,
            "device": self.device in {"auto", "cpu", "cuda"},
            "precision": self.precision in PRECISIONS,
            "context": self.context in {"joint", "fused"},
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in bad)
            raise ValueError(f"invalid training arguments: {shown}")

    def epochs_for(
        self, rows: int, *, in_scope: tuple[int, int] | None = None, valid_rows: int = 0
    ) -> int:
        """Fine-tuning epochs for ``rows`` training rows; given ``in_scope`` (its rows and
        intents, ``oos`` left out) and ``valid_rows``, 0 (the encoder as it is) below
        :attr:`fine_tune_min_rows` an intent or :attr:`fine_tune_min_valid_rows`, unless
        epochs are asked for."""
        if self.epochs is not None:
            return self.epochs
        if in_scope is not None and self.layers is None:  # a cut encoder must learn
            in_rows, intents = in_scope
            few = in_rows < self.fine_tune_min_rows * intents
            if few or valid_rows < self.fine_tune_min_valid_rows:
                return 0
        return min(10, max(3, round(self.examples_budget / max(1, rows))))

    def batch_size_for(self, rows: int) -> int:
        if self.batch_size is not None:
            return self.batch_size
        return 16 if rows < 2000 else 32

    def resolved_device(self) -> str:
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            from training.errors import TrainingError

            raise TrainingError(
                "--device cuda: no CUDA device is available to torch here; use --device cpu or auto"
            )
        if self.device != "auto":
            return self.device
        return "cuda" if torch.cuda.is_available() else "cpu"

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> TrainingArguments:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def load_base_encoder(
    base_model: Path | None, device: str, max_length: int, layers: int | None = None
) -> Encoder:
    """The encoder to fine-tune: ``base_model`` (default: the shipped MiniLM) on
    ``device``, cut to its first ``layers`` transformer layers when given (a depth the
    model does not have is a :class:`TrainingError`)."""
    from retrieval.encoder import Encoder, base_model_path, keep_first_layers
    from training.errors import TrainingError

    encoder = Encoder(base_model or base_model_path(), device=device, max_length=max_length)
    if layers is not None:
        try:
            keep_first_layers(encoder.model, layers)
        except ValueError as exc:
            raise TrainingError(f"layers={layers}: {exc}") from exc
    return encoder
