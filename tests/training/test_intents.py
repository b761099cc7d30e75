"""Intent fine-tuning on a tiny real model: it overfits a handful of rows."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.encoder import Encoder, base_model_path
from training.args import TrainingArguments
from training.intents import train_intents

ROWS = [
    ("where is my parcel", "track"),
    ("has my package shipped yet", "track"),
    ("tracking number for my delivery", "track"),
    ("when will my order arrive", "track"),
    ("I want my money back", "refund"),
    ("how do I get a refund", "refund"),
    ("refund my payment please", "refund"),
    ("you charged me twice, give it back", "refund"),
    ("hello there", "greet"),
    ("hi!", "greet"),
    ("good morning", "greet"),
    ("hey, anyone around?", "greet"),
]


@pytest.fixture(scope="module")
def trained() -> tuple[Encoder, object]:
    encoder = Encoder(base_model_path())
    args = TrainingArguments(epochs=4, batch_size=4, seed=1)
    head = train_intents(encoder, [t for t, _ in ROWS], [y for _, y in ROWS], args, progress=False)
    return encoder, head


def test_fits_its_training_rows(trained: tuple[Encoder, object]) -> None:
    """After fine-tuning, every training row is predicted as its own intent."""
    encoder, head = trained
    probs, _ = head.predict(encoder.encode([t for t, _ in ROWS]))  # type: ignore[attr-defined]
    predicted = [head.labels[i] for i in probs.argmax(axis=1)]  # type: ignore[attr-defined]
    assert predicted == [y for _, y in ROWS]
    assert probs.max(axis=1).min() > 0.5


def test_generalises_to_paraphrases_and_flags_unrelated_text(
    trained: tuple[Encoder, object],
) -> None:
    """Unseen paraphrases land on the right intent; unrelated text scores as out of scope."""
    encoder, head = trained
    probs, oos = head.predict(  # type: ignore[attr-defined]
        encoder.encode(
            ["where's my package?", "can I have a refund", "what is the capital of Peru"]
        )
    )
    labels = [head.labels[i] for i in probs.argmax(axis=1)]  # type: ignore[attr-defined]
    assert labels[:2] == ["track", "refund"]
    assert oos[2] > 0.5 and oos[0] < 0.5 and oos[1] < 0.5


def test_same_seed_same_model() -> None:
    """Training is reproducible: the same seed gives the same head."""
    rows = ROWS[:8]
    args = TrainingArguments(epochs=1, batch_size=4, seed=3)
    heads = [
        train_intents(
            Encoder(base_model_path()),
            [t for t, _ in rows],
            [y for _, y in rows],
            args,
            progress=False,
        )
        for _ in range(2)
    ]
    np.testing.assert_allclose(heads[0].weight, heads[1].weight, atol=1e-5)


@pytest.mark.parametrize("bad", [{"epochs": -1}, {"device": "tpu"}, {"label_smoothing": 1.0}])
def test_invalid_arguments_are_refused(bad: dict[str, object]) -> None:
    """Training arguments are validated when built, naming the bad field."""
    with pytest.raises(ValueError, match=next(iter(bad))):
        TrainingArguments(**bad)  # type: ignore[arg-type]
