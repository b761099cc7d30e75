"""Intent fine-tuning on a tiny real model: it overfits a handful of rows."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

from retrieval.encoder import Encoder, base_model_path
from retrieval.intent_head import IntentHead
from training.args import TrainingArguments, load_base_encoder
from training.errors import TrainingError
from training.intents import (
    GUARD_QUANTILE,
    WeightAverage,
    calibrated,
    encoder_groups,
    length_batches,
    split_validation,
    supervised_contrastive,
    train_intents,
)

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


SIX_PER_INTENT = [
    *ROWS,
    ("track my order please", "track"), ("where is the delivery", "track"),
    ("refund the money", "refund"), ("money back please", "refund"),
    ("hello!", "greet"), ("hi there friend", "greet"),
]  # fmt: skip
"""Enough rows per intent for a validation carve-out (2 of 6 at ``valid_fraction`` 0.3)."""


@pytest.fixture(scope="module")
def trained() -> tuple[Encoder, IntentHead]:
    encoder = Encoder(base_model_path())
    args = TrainingArguments(epochs=4, batch_size=4, seed=1)
    result = train_intents(
        encoder, [t for t, _ in ROWS], [y for _, y in ROWS], args, progress=False
    )
    return encoder, result.head


def test_fits_its_training_rows(trained: tuple[Encoder, IntentHead]) -> None:
    """After fine-tuning, every training row is predicted as its own intent."""
    encoder, head = trained
    probs, _ = head.predict(encoder.encode([t for t, _ in ROWS]))
    predicted = [head.intents[i] for i in probs.argmax(axis=1)]
    assert predicted == [y for _, y in ROWS]
    assert probs.max(axis=1).min() > 0.5


def test_generalises_to_paraphrases_and_flags_unrelated_text(
    trained: tuple[Encoder, IntentHead],
) -> None:
    """Unseen paraphrases land on the right intent; unrelated text scores as out of scope."""
    encoder, head = trained
    probs, oos = head.predict(
        encoder.encode(
            ["where's my package?", "can I have a refund", "what is the capital of Peru"]
        )
    )
    labels = [head.intents[i] for i in probs.argmax(axis=1)]
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
        ).head
        for _ in range(2)
    ]
    np.testing.assert_allclose(heads[0].weight, heads[1].weight, atol=1e-5)


@pytest.mark.parametrize(
    "bad",
    [
        {"epochs": -1},
        {"device": "tpu"},
        {"label_smoothing": 1.0},
        {"precision": "fp16"},
        {"soup": 0},
        {"layers": 0},
        {"layer_decay": 0.0},
        {"layer_decay": 1.5},
    ],
)
def test_invalid_arguments_are_refused(bad: dict[str, object]) -> None:
    """Training arguments are validated when built, naming the bad field."""
    with pytest.raises(ValueError, match=next(iter(bad))):
        TrainingArguments(**bad)  # type: ignore[arg-type]


def test_layer_decay_gives_lower_layers_lower_rates() -> None:
    """``layer_decay`` 0.5 on a two-layer encoder: the top layer at the full rate, the one
    below at half, the embeddings at a quarter; every trainable parameter in exactly one
    group, the frozen word embeddings in none. 1 is a single group at the rate."""
    model = load_base_encoder(None, "cpu", 128, layers=2).model
    model.get_input_embeddings().weight.requires_grad_(False)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    groups = encoder_groups(model, 1e-4, 0.5)
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 5e-5, 2.5e-5])
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(trainable)
    top, below, bottom = ({id(p) for p in g["params"]} for g in groups)
    assert {id(p) for p in model.encoder.layer[1].parameters()} == top
    assert {id(p) for p in model.encoder.layer[0].parameters()} == below
    assert id(model.embeddings.position_embeddings.weight) in bottom
    (single,) = encoder_groups(model, 1e-4, 1.0)
    assert single["lr"] == 1e-4 and len(single["params"]) == len(trainable)


def test_fewer_layers_keep_the_base_encoders_first_layers() -> None:
    """``layers=2``: the encoder to fine-tune is the base model's first two layers (its
    output is the full model's hidden state after layer 2), and the config says so; more
    layers than the base has is a training error that names the setting."""
    full = Encoder(base_model_path())
    cut = load_base_encoder(None, "cpu", 128, layers=2)
    assert len(cut.model.encoder.layer) == cut.model.config.num_hidden_layers == 2
    features = full.tokenize(["where is my parcel", "I forgot my password"])
    with torch.inference_mode():
        after_two = full.model(**features, output_hidden_states=True).hidden_states[2]
        torch.testing.assert_close(cut.model(**features).last_hidden_state, after_two)
    with pytest.raises(TrainingError, match="layers=7: the encoder has 6 layers"):
        load_base_encoder(None, "cpu", 128, layers=7)


def test_validation_carve_out_is_stratified_and_seeded() -> None:
    """About 10 % of each intent with >= 5 rows; tinier intents stay whole in training."""
    labels = ["a"] * 20 + ["b"] * 10 + ["c"] * 4
    train, valid = split_validation(labels, 0.1, seed=7)
    assert sorted(np.concatenate([train, valid]).tolist()) == list(range(len(labels)))
    assert sorted(labels[i] for i in valid) == ["a", "a", "b"]
    again = split_validation(labels, 0.1, seed=7)
    assert (again[1] == valid).all()


def test_length_batches_cover_every_row_once_with_similar_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=1000)
    batches = length_batches(lengths, 32, np.random.default_rng(1))
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 5  # random batches of 32 would spread over ~50 tokens


def test_auto_epochs_and_batch_size_follow_the_data_size() -> None:
    args = TrainingArguments()
    assert args.epochs_for(300) == 10 and args.batch_size_for(300) == 16
    assert args.epochs_for(10_000) == 4 and args.batch_size_for(10_000) == 32
    assert args.epochs_for(100_000) == 3
    assert TrainingArguments(epochs=2).epochs_for(300) == 2
    # fewer than fine_tune_min_rows (25) in-scope rows an intent, or fewer than
    # fine_tune_min_valid_rows (50) validation rows (no temperature could be fitted): the
    # encoder is not fine-tuned; oos rows do not count, in either direction ...
    assert args.epochs_for(300, in_scope=(300, 20), valid_rows=50) == 0
    assert args.epochs_for(499, in_scope=(499, 20), valid_rows=50) == 0
    assert args.epochs_for(500, in_scope=(500, 20), valid_rows=50) == 10
    assert args.epochs_for(500, in_scope=(500, 20), valid_rows=49) == 0
    assert args.epochs_for(900, in_scope=(300, 20), valid_rows=100) == 0  # + 600 oos rows
    # ... unless epochs are asked for, or the encoder is cut (it must learn to be shallow)
    assert TrainingArguments(epochs=2).epochs_for(300, in_scope=(300, 20)) == 2
    assert TrainingArguments(layers=3).epochs_for(300, in_scope=(300, 20)) == 10


def test_few_rows_an_intent_keep_the_base_encoder_and_fit_the_head_to_it() -> None:
    """With automatic epochs and a handful of rows an intent, no encoder weight moves; the
    head is fitted to the base encoder's embeddings (it starts at the centroids and ends
    surer of the right intents), and without probe steps it stays at the centroids."""
    texts, labels = [t for t, _ in SIX_PER_INTENT], [y for _, y in SIX_PER_INTENT]
    base = Encoder(base_model_path())
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    args = TrainingArguments(valid_fraction=0.3, seed=5)
    probed = train_intents(base, texts, labels, args, progress=False)
    assert probed.epochs == 0 and probed.best_epoch == 0 and probed.history == ()
    after = base.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)

    centroid = train_intents(
        Encoder(base_model_path()), texts, labels, replace(args, probe_steps=0), progress=False
    )
    train_texts = [t for t in texts if t not in set(probed.valid_texts)]
    emb = base.encode(train_texts)
    truth = [labels[texts.index(t)] for t in train_texts]

    def margin(head: IntentHead) -> float:
        """Mean logit of the right intent over the best wrong one, on the training rows."""
        logits = head.logits(emb)
        right = np.asarray([head.labels.index(y) for y in truth])
        rows = np.arange(len(truth))
        wrong = logits.copy()
        wrong[rows, right] = -np.inf
        return float((logits[rows, right] - wrong.max(axis=1)).mean())

    assert not np.allclose(probed.head.weight, centroid.head.weight)
    assert margin(probed.head) > margin(centroid.head) + 1.0
    probs, _ = probed.head.predict(emb)
    assert [probed.head.intents[i] for i in probs.argmax(axis=1)] == truth

    again = train_intents(Encoder(base_model_path()), texts, labels, args, progress=False)
    np.testing.assert_array_equal(again.head.weight, probed.head.weight)  # seeded, exact
    # no probe steps: the head is the intents' centroids, at the logit scale
    centroids = np.stack([emb[np.asarray(truth) == y].mean(0) for y in centroid.head.labels])
    expected = args.logit_scale * _unit(centroids)
    np.testing.assert_allclose(centroid.head.weight, expected, rtol=1e-4, atol=1e-4)

    few_valid = replace(args, fine_tune_min_rows=2)  # rows enough, 6 validation rows not
    kept = train_intents(Encoder(base_model_path()), texts, labels, few_valid, progress=False)
    assert kept.epochs == 0 and kept.valid_rows == 6
    tuned = train_intents(
        Encoder(base_model_path()),
        texts,
        labels,
        replace(args, fine_tune_min_rows=2, fine_tune_min_valid_rows=6),
        progress=False,
    )
    assert tuned.epochs == 10 and tuned.best_epoch >= 1  # enough rows for this setting
    cut = train_intents(
        Encoder(base_model_path()), texts, labels, replace(args, layers=2), progress=False
    )
    assert cut.epochs == 10 and cut.best_epoch >= 1  # a cut encoder is always fine-tuned


def _unit(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    out: npt.NDArray[np.float32] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return out


def test_a_head_fitted_alone_then_learns_from_the_rows_that_set_its_thresholds() -> None:
    """With the head fitted alone and validation rows carved out, the head that set the
    temperature and thresholds is kept as ``validated_head`` and the head is fitted again
    on all rows, those thresholds kept: it fits the validation rows better than before.
    Not with validation rows given apart (they stay unseen), nor when fine-tuning."""
    texts, labels = [t for t, _ in SIX_PER_INTENT], [y for _, y in SIX_PER_INTENT]
    args = TrainingArguments(valid_fraction=0.3, seed=5)
    base = Encoder(base_model_path())
    refit = train_intents(base, texts, labels, args, progress=False)
    plain = train_intents(base, texts, labels, replace(args, refit_head=False), progress=False)
    assert plain.validated_head is None and refit.validated_head is not None
    np.testing.assert_array_equal(refit.validated_head.weight, plain.head.weight)
    kept = ("temperature", "threshold", "min_similarity")
    assert [getattr(refit.head, k) for k in kept] == [getattr(plain.head, k) for k in kept]
    assert not np.allclose(refit.head.weight, plain.head.weight)

    emb = base.encode(refit.valid_texts)
    right = np.asarray([plain.head.labels.index(y) for y in refit.valid_labels])

    def right_logit(head: IntentHead) -> float:
        return float(head.logits(emb)[np.arange(len(right)), right].mean())

    assert right_logit(refit.head) > right_logit(plain.head) + 0.5

    given = train_intents(
        base, texts, labels, args, valid_texts=texts[:3], valid_labels=labels[:3], progress=False
    )
    assert given.epochs == 0 and given.validated_head is None
    tuned = train_intents(
        Encoder(base_model_path()), texts, labels, replace(args, epochs=1), progress=False
    )
    assert tuned.validated_head is None


def test_oos_rows_do_not_count_as_rows_of_an_intent() -> None:
    """Out-of-scope rows, however many, do not make the intents' few rows enough to
    fine-tune on: 4 training rows an intent and 30 oos rows keep the base encoder."""
    oos = [(f"unrelated question number {i} about the weather", "oos") for i in range(30)]
    rows = [*SIX_PER_INTENT, *oos]
    args = TrainingArguments(
        valid_fraction=0.3, seed=5, fine_tune_min_rows=6, fine_tune_min_valid_rows=0
    )
    result = train_intents(
        Encoder(base_model_path()), [t for t, _ in rows], [y for _, y in rows], args, progress=False
    )
    assert result.epochs == 0 and result.head.oos_label == "oos"
    args = replace(args, fine_tune_min_rows=4)  # 4 rows an intent are enough for this one
    result = train_intents(
        Encoder(base_model_path()), [t for t, _ in rows], [y for _, y in rows], args, progress=False
    )
    assert result.epochs > 0


def test_early_stopping_keeps_the_best_epoch() -> None:
    """Easy intents reach full validation accuracy at once: training stops after `patience`
    epochs without improvement and keeps the best epoch's weights."""
    rows = SIX_PER_INTENT
    args = TrainingArguments(epochs=6, batch_size=4, patience=1, seed=5, valid_fraction=0.3)
    result = train_intents(
        Encoder(base_model_path()), [t for t, _ in rows], [y for _, y in rows], args, progress=False
    )
    accuracies = [r.valid_accuracy for r in result.history]
    assert len(result.history) < 6
    assert len(result.history) == result.best_epoch + 1
    assert accuracies[result.best_epoch - 1] == max(accuracies)  # type: ignore[type-var]
    assert result.valid_rows == 6 and result.train_rows == len(rows) - 6  # 2 of 6 per intent


def test_supervised_contrastive_loss_rewards_rows_of_one_intent_being_close() -> None:
    target = torch.tensor([0, 0, 1, 1])
    together = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    crossed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    close = supervised_contrastive(together, target, 0.1)
    far = supervised_contrastive(crossed, target, 0.1)
    assert close.item() < 0.01 < 5 < far.item()
    # no row has a partner of its intent: nothing to learn, and no NaN in the gradient
    alone = torch.nn.functional.normalize(torch.randn(4, 2), dim=-1).requires_grad_(True)
    loss = supervised_contrastive(alone, torch.arange(4), 0.1)
    loss.backward()  # type: ignore[no-untyped-call]
    assert loss.item() == 0.0 and alone.grad is not None and torch.isfinite(alone.grad).all()
    # rows with a partner count, the others are left out of the mean
    mixed = supervised_contrastive(together, torch.tensor([0, 0, 1, 2]), 0.1)
    assert mixed.item() < 0.01


def test_weight_average_follows_the_weights_and_stands_in_for_them() -> None:
    """Every `every` steps the average moves `every / window` of the way to the weights;
    inside `swapped_in` the parameters hold the average, and their own values after."""
    param = torch.nn.Parameter(torch.zeros(3))
    average = WeightAverage([param], window=4, every=2)
    for value in (1.0, 2.0, 3.0, 4.0):
        with torch.no_grad():
            param.fill_(value)
        average.step()
    # updated after steps 2 (weights 2) and 4 (weights 4), half the way each time
    np.testing.assert_allclose(average.shadow[0].numpy(), [2.5] * 3)
    with average.swapped_in():
        np.testing.assert_allclose(param.detach().numpy(), [2.5] * 3)
    np.testing.assert_allclose(param.detach().numpy(), [4.0] * 3)
    with pytest.raises(RuntimeError), average.swapped_in():
        raise RuntimeError("an evaluation failed")
    np.testing.assert_allclose(param.detach().numpy(), [4.0] * 3)


def test_averaged_weights_are_scored_and_chosen_by_validation() -> None:
    """With `average_epochs`, each epoch also scores the weights' moving average on the
    validation rows; the kept model is the best of both by validation accuracy."""
    rows = SIX_PER_INTENT
    args = TrainingArguments(epochs=2, batch_size=4, seed=5, valid_fraction=0.3, average_epochs=0.5)
    result = train_intents(
        Encoder(base_model_path()), [t for t, _ in rows], [y for _, y in rows], args, progress=False
    )
    assert all(r.averaged_valid_accuracy is not None for r in result.history)
    scores = [s for r in result.history for s in (r.valid_accuracy, r.averaged_valid_accuracy)]
    best = result.history[result.best_epoch - 1]
    assert max(best.valid_accuracy or 0, best.averaged_valid_accuracy or 0) == max(scores)  # type: ignore[type-var]
    plain = train_intents(
        Encoder(base_model_path()),
        [t for t, _ in rows],
        [y for _, y in rows],
        replace(args, average_epochs=0.0),
        progress=False,
    )
    assert all(r.averaged_valid_accuracy is None for r in plain.history)
    # the average only watches: the weights' own trajectory is the same
    assert [r.valid_accuracy for r in plain.history] == [r.valid_accuracy for r in result.history]


def _head(labels: tuple[str, ...], oos_label: str | None = None) -> IntentHead:
    n = len(labels)
    return IntentHead(
        labels=labels,
        weight=np.eye(n, dtype=np.float32),
        bias=np.zeros(n, dtype=np.float32),
        temperature=1.0,
        threshold=0.0,
        oos_label=oos_label,
    )


def test_without_oos_rows_the_threshold_rejects_no_right_answer() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, size=300)
    logits = rng.normal(0, 1, size=(300, 3)).astype(np.float32)
    logits[np.arange(300), labels] += 3.0
    head = calibrated(_head(("a", "b", "c")), logits, labels, 0.0)
    probs, oos = head.predict(logits)  # identity weight: embeddings are the logits
    right = probs.argmax(axis=1) == labels
    assert 0.3 < head.temperature < 3.0
    assert (oos[right] < 0.5).all()
    assert head.threshold > 1 / 3


def test_with_oos_rows_the_threshold_trades_them_off() -> None:
    """Out-of-scope validation rows (class `oos`) are rejected; in-scope rows are kept."""
    labels = np.asarray([0, 1, 2] * 20)  # class 1 is `oos`
    logits = np.full((60, 3), 0.0, dtype=np.float32)
    logits[labels == 0, 0] = 4.0
    logits[labels == 2, 2] = 4.0
    logits[labels == 1] = [1.0, 1.5, 1.2]  # oos rows: in-scope confidence stays low
    head = calibrated(_head(("a", "oos", "c"), "oos"), logits, labels, 0.0)
    probs, oos = head.predict(logits)
    assert head.intents == ("a", "c") and probs.shape == (60, 2)
    assert (oos[labels == 1] > 0.5).all() and (oos[labels != 1] < 0.5).all()


def test_oos_validation_rows_set_the_threshold_without_an_oos_class() -> None:
    """Out-of-scope rows only in the validation set (label -1 there) tune the threshold."""
    labels = np.asarray([0, 1, -1] * 20)
    logits = np.zeros((60, 2), dtype=np.float32)
    logits[labels == 0, 0] = 4.0
    logits[labels == 1, 1] = 4.0
    logits[labels == -1] = [0.6, 0.4]
    head = calibrated(_head(("a", "b")), logits, labels, 0.0)
    _, oos = head.predict(logits)
    assert (oos[labels == -1] > 0.5).all() and (oos[labels >= 0] < 0.5).all()


def test_training_accepts_oos_rows_in_validation_only() -> None:
    rows = ROWS
    result = train_intents(
        Encoder(base_model_path()),
        [t for t, _ in rows],
        [y for _, y in rows],
        TrainingArguments(epochs=1, batch_size=4, seed=2),
        valid_texts=["where is my order", "what is the capital of Peru"],
        valid_labels=["track", "oos"],
        progress=False,
    )
    assert result.head.oos_label is None and result.valid_rows == 2
    assert result.history[0].valid_accuracy in {0.0, 1.0}  # over the in-scope row only


def _unit(rows: npt.ArrayLike) -> npt.NDArray[np.float32]:
    x = np.asarray(rows, dtype=np.float32)
    out: npt.NDArray[np.float32] = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return out


def test_similarity_guard_rejects_a_message_unlike_every_intent() -> None:
    """A message far from every intent's direction is out of scope even when the softmax,
    which only compares intents with each other, is confident about one of them."""
    rng = np.random.default_rng(7)
    weight = 10.0 * np.eye(3, 4, dtype=np.float32)  # 3 intents in a 4-d space, scale 10
    head = replace(_head(("a", "b", "c")), weight=weight)
    labels = rng.integers(0, 3, size=200)
    embeddings = _unit(np.eye(3, 4)[labels] + rng.normal(0, 0.15, size=(200, 4)))
    fitted = calibrated(head, embeddings @ weight.T, labels, 0.0)  # no oos data: cap 0
    similarity = fitted.similarity(embeddings @ weight.T)
    assert 0.5 < fitted.min_similarity < similarity.min()  # no right answer rejected
    # with a looser cap (oos data lets the threshold reject right answers) the guard
    # moves up to the GUARD_QUANTILE of in-scope rows
    loose = calibrated(head, embeddings @ weight.T, labels, 1.0)
    assert fitted.min_similarity < loose.min_similarity
    assert 0 < (similarity < loose.min_similarity).mean() <= GUARD_QUANTILE + 1e-9

    serving = replace(head, threshold=0.5, min_similarity=0.8)
    far = _unit([[0.3, 0.0, 0.0, 1.0]])  # cosine 0.29 to intent a, 0 to the others
    probs, oos = serving.predict(far)
    assert probs.argmax() == 0 and probs.max() > 0.85  # the softmax is sure
    assert oos[0] > 0.5  # the guard is not
    _, without_guard = replace(serving, min_similarity=-1.0).predict(far)
    assert without_guard[0] < 0.5
    _, near = serving.predict(_unit([[1.0, 0.05, 0.0, 0.05]]))
    assert near[0] < 0.5


def test_similarity_guard_needs_enough_rows_and_survives_saving(tmp_path: Path) -> None:
    weight = 10.0 * np.eye(2, 3, dtype=np.float32)
    head = replace(_head(("a", "b")), weight=weight)
    labels = np.asarray([0, 1] * 30)
    embeddings = _unit(np.eye(2, 3)[labels] + 0.1)
    assert calibrated(head, embeddings[:40] @ weight.T, labels[:40], 1.0).min_similarity == -1.0
    fitted = calibrated(head, embeddings @ weight.T, labels, 1.0)
    assert fitted.min_similarity > 0.5
    fitted.save(tmp_path / "head.npz")
    assert IntentHead.load(tmp_path / "head.npz").min_similarity == fitted.min_similarity
    # a head saved before the guard existed loads without it
    meta = {"temperature": 1.0, "threshold": 0.5, "oos_label": None}
    np.savez(
        tmp_path / "old.npz",
        labels=np.asarray(["a", "b"]),
        weight=weight,
        bias=np.zeros(2, dtype=np.float32),
        meta=np.asarray(json.dumps(meta)),
    )
    assert IntentHead.load(tmp_path / "old.npz").min_similarity == -1.0


def test_a_soup_averages_models_trained_from_one_start_with_other_seeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``soup=2``: the first model is the one ``soup=1`` trains, the second starts from the
    same encoder and centroids with the next seed, and the result is their average."""
    from training import intents

    members: list[tuple[dict[str, torch.Tensor], torch.Tensor]] = []
    average = intents.average_weights

    def spy(
        given: list[tuple[dict[str, torch.Tensor], torch.Tensor]],
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        members.extend(given)
        return average(given)

    monkeypatch.setattr(intents, "average_weights", spy)
    texts, labels = [t for t, _ in ROWS], [y for _, y in ROWS]
    args = TrainingArguments(epochs=2, batch_size=4, seed=1)
    alone = train_intents(Encoder(base_model_path()), texts, labels, args, progress=False)
    # 4 rows an intent: nothing is held out, so every seed trains on the same rows
    second_alone = train_intents(
        Encoder(base_model_path()), texts, labels, replace(args, seed=2), progress=False
    )
    encoder = Encoder(base_model_path())
    soup = train_intents(encoder, texts, labels, replace(args, soup=2), progress=False)

    def head_weight(vectors: torch.Tensor) -> npt.NDArray[np.float32]:
        scaled = args.logit_scale * torch.nn.functional.normalize(vectors.float(), dim=-1)
        out: npt.NDArray[np.float32] = scaled.numpy()
        return out

    assert len(members) == 2
    (first_state, first), (second_state, second) = members
    np.testing.assert_allclose(head_weight(first), alone.head.weight, atol=1e-5)
    assert not torch.allclose(first, second, atol=1e-4)  # another seed, another model
    # the second member is what seed 2 trains alone: it restarted from the same start
    np.testing.assert_allclose(head_weight(second), second_alone.head.weight, atol=1e-5)
    np.testing.assert_allclose(head_weight((first + second) / 2), soup.head.weight, atol=1e-5)
    layer = "encoder.layer.0.attention.self.query.weight"
    served = encoder.model.state_dict()[layer]
    torch.testing.assert_close(served, (first_state[layer] + second_state[layer]) / 2)
    assert [r.member for r in soup.history] == [0, 0, 1, 1]
    frozen = "embeddings.word_embeddings.weight"  # frozen by default: exactly the start's
    assert torch.equal(encoder.model.state_dict()[frozen], first_state[frozen])
    probs, _ = soup.head.predict(encoder.encode(texts))
    assert [soup.head.intents[i] for i in probs.argmax(axis=1)] == labels
