"""Training arguments: typed, validated when built, saved next to every trained model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrainingArguments:
    epochs: int = 6
    batch_size: int = 16
    learning_rate: float = 6e-5
    head_learning_rate: float = 3e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    label_smoothing: float = 0.1
    logit_scale: float = 20.0
    """Cosine-classifier scale: logits = scale * cos(embedding, class vector)."""
    oos_quantile: float = 0.02
    """Quantile of in-scope nearest-example similarity taken as the out-of-scope boundary."""
    max_length: int = 64
    seed: int = 13
    device: str = "auto"

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 0,
            "batch_size": self.batch_size >= 1,
            "learning_rate": self.learning_rate > 0,
            "head_learning_rate": self.head_learning_rate > 0,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "oos_quantile": 0 < self.oos_quantile < 1,
            "max_length": self.max_length >= 8,
            "device": self.device in {"auto", "cpu", "cuda"},
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in bad)
            raise ValueError(f"invalid training arguments: {shown}")

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> TrainingArguments:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
