"""A shallower encoder taught by the full one before fine-tuning (an experiment, issue 3).

`--layers N` keeps MiniLM's first N layers; with few labelled rows they lose much more
accuracy than with many (BENCHMARKS.md). This script first trains the cut encoder to give
the full encoder's sentence embeddings (mean-pooled, unit length; loss 1 - cosine) on
unlabelled texts, then fine-tunes it on the labelled rows with the stable defaults
(`training.intent_model.train_intent_model`, base model = the distilled encoder), and
evaluates on Banking77's test split.

Unlabelled texts (`--unlabelled`): `train` = the labelled rows' own texts, `all` = every
text of Banking77's training split with its label unused (what a bot's past chats would
give). `--shots K` labels K rows per intent (0: all). Prints one JSON object.

    python benchmarks/layers_distil.py --layers 4 --shots 10 --unlabelled all --epochs 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from intents_banking77 import few_shot, read_csv

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import torch

    from retrieval.encoder import Encoder, base_model_path, keep_first_layers
    from training.args import TrainingArguments
    from training.intent_model import train_intent_model

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "banking77")
    parser.add_argument("--layers", type=int, required=True)
    parser.add_argument("--shots", type=int, default=10, help="labelled rows per intent (0: all)")
    parser.add_argument("--unlabelled", choices=["train", "all"], default="all")
    parser.add_argument("--epochs", type=int, default=1, help="distillation epochs (0: none)")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--batch", type=int, default=32)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="distil-") as tmp:
        train = options.data / "train.csv"
        if options.shots:
            train = few_shot(train, options.shots, Path(tmp) / "train.csv")
        texts, _ = read_csv(train if options.unlabelled == "train" else options.data / "train.csv")
        torch.manual_seed(0)
        teacher = Encoder(base_model_path())
        student = Encoder(base_model_path())
        keep_first_layers(student.model, options.layers)
        student.model.get_input_embeddings().weight.requires_grad_(False)
        trainable = [p for p in student.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=options.learning_rate)
        rng = np.random.default_rng(0)
        losses: list[float] = []
        started = time.perf_counter()
        student.model.train()
        for _ in range(options.epochs):
            order = rng.permutation(len(texts))
            epoch_losses = []
            for start in range(0, len(texts), options.batch):
                batch = [texts[i] for i in order[start : start + options.batch]]
                with torch.no_grad():
                    target = teacher.embed(teacher.tokenize(batch))
                loss = (1 - (student.embed(student.tokenize(batch)) * target).sum(-1)).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                epoch_losses.append(float(loss))
            losses.append(round(float(np.mean(epoch_losses)), 4))
        student.model.eval()
        distil_seconds = time.perf_counter() - started
        student.save(Path(tmp) / "student")
        model = Path(tmp) / "model"
        result = train_intent_model(
            train, model, args=TrainingArguments(), base_model=Path(tmp) / "student", progress=False
        )
        out = subprocess.run(
            [sys.executable, "-m", "channels.cli", "intents", "eval", "--model", str(model),
             "--test", str(options.data / "test.csv"), "--json"],
            check=True, capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
    print(
        json.dumps(
            {
                **{k: v for k, v in vars(options).items() if k != "data"},
                "unlabelled_texts": len(texts),
                "distil_loss_by_epoch": losses,
                "distil_seconds": round(distil_seconds, 1),
                "train_seconds": round(result.seconds, 1),
                "test": json.loads(out.stdout),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
