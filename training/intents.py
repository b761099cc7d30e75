"""Fine-tune the shared encoder with a cosine intent head (full fine-tuning)."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from retrieval import scoring
from retrieval.bundle import IntentHead
from retrieval.encoder import Encoder
from training.args import TrainingArguments

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_intents(
    encoder: Encoder,
    texts: Sequence[str],
    labels: Sequence[str],
    args: TrainingArguments,
    *,
    progress: bool = True,
) -> IntentHead:
    """Fine-tune ``encoder`` in place on (text, intent) rows and return the intent head."""
    if len(texts) != len(labels) or not texts:
        raise ValueError(
            f"expected as many labels as texts (> 0), got {len(texts)} / {len(labels)}"
        )
    seed_everything(args.seed)
    names = tuple(sorted(set(labels)))
    if len(names) < 2:
        raise ValueError(f"expected at least 2 intents, got {len(names)}: {names}")
    y = np.asarray([names.index(label) for label in labels], dtype=np.int64)

    # Initialise each class vector at its centroid in the base encoder's space.
    base = encoder.encode(texts)  # (N, D)
    centroids = np.stack([base[y == c].mean(axis=0) for c in range(len(names))])  # (C, D)
    class_vectors = torch.nn.Parameter(
        torch.tensor(scoring.normalize(centroids), device=encoder.device)
    )
    model = encoder.model
    optimizer = torch.optim.AdamW(
        [
            {"params": model.parameters(), "lr": args.learning_rate},
            {"params": [class_vectors], "lr": args.head_learning_rate},
        ],
        weight_decay=args.weight_decay,
    )
    steps_per_epoch = math.ceil(len(texts) / args.batch_size)
    total = max(1, steps_per_epoch * args.epochs)
    warmup = int(total * args.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            (step + 1) / max(1, warmup)
            if step < warmup
            else max(0.0, (total - step) / max(1, total - warmup))
        ),
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    use_amp = encoder.device.type == "cuda"
    rng = np.random.default_rng(args.seed)
    model.train()
    bar = tqdm(total=total, desc="intents", disable=not progress, unit="step")
    for _epoch in range(args.epochs):
        order = rng.permutation(len(texts))
        for start in range(0, len(order), args.batch_size):
            idx = order[start : start + args.batch_size]
            features = encoder.tokenize([texts[i] for i in idx])
            target = torch.tensor(y[idx], device=encoder.device)
            with torch.autocast(encoder.device.type, dtype=torch.bfloat16, enabled=use_amp):
                emb = encoder.embed(features)  # (B, D), unit length
                weights = torch.nn.functional.normalize(class_vectors, dim=-1)  # (C, D)
                logits = args.logit_scale * emb.float() @ weights.T
                loss = loss_fn(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()

    examples = encoder.encode(texts)  # (N, D) in the fine-tuned space
    weight = args.logit_scale * torch.nn.functional.normalize(class_vectors.detach(), dim=-1)
    return IntentHead(
        labels=names,
        weight=weight.float().cpu().numpy(),
        bias=np.zeros(len(names), dtype=np.float32),
        temperature=1.0,
        examples=examples,
        oos_similarity=scoring.similarity_threshold(examples, y, args.oos_quantile),
    )
