"""`frontdesk train`: a bot folder becomes a published, self-checking model bundle."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.definition import load_bot
from channels.errors import NotReady
from channels.runtime import load_current_bundle, load_serving
from retrieval.bundle import FORMAT, MANIFEST, Bundle
from retrieval.errors import BundleError
from retrieval.registry import Registry
from training.pipeline import is_stale, logs_digest

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


def test_bundle_holds_every_part(shop_home: Path) -> None:
    """The published bundle has the encoder, the intent head, the index, args and a manifest."""
    path = Registry(shop_home / "models").current_path()
    assert path is not None
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["bot"] == "northwind-shop"
    assert sorted(manifest["intents"]) == sorted(i.name for i in load_bot(SHOP).intents)
    assert manifest["indexed_turns"] > 40
    assert manifest["training_args"]["epochs"] == 4
    assert manifest["training_args"]["precision"] == "auto"
    assert manifest["precision"] in {"bf16", "fp32"}
    for part in (
        "encoder/config.json",
        "encoder/model.onnx",
        "intent_head.npz",
        "index/index.faiss",
        "training_args.json",
    ):
        assert (path / part).is_file(), part


def test_one_pass_serves_intents_oos_and_retrieval(shop_bundle: Bundle) -> None:
    """analyze() gives intents, an out-of-scope score and retrieved past replies per message."""
    known, unrelated, long_tail = shop_bundle.analyze(
        ["where is my order 1042?", "what is the capital of Peru", "do you offer gift wrapping?"]
    )
    assert known.intents[0][0] == "order_status" and known.intents[0][1] > 0.5
    assert abs(sum(p for _, p in known.intents) - 1.0) < 1e-4
    assert unrelated.out_of_scope > 0.5 > known.out_of_scope
    assert "Gift wrap" in long_tail.replies[0].text
    scores = [r.score for r in long_tail.replies]
    assert scores == sorted(scores, reverse=True)


def _republished(
    registry: Registry, folder: Path, edit: Callable[[dict[str, Any]], None]
) -> Registry:
    """A registry in ``folder`` whose current bundle is ``registry``'s with its manifest
    edited by ``edit`` (what an older Frontdesk would have written)."""
    source = registry.current_path()
    assert source is not None
    older = Registry(folder)
    staged = folder / ".staging"
    shutil.copytree(source, staged)
    manifest = json.loads((staged / MANIFEST).read_text())
    edit(manifest)
    (staged / MANIFEST).write_text(json.dumps(manifest))
    older.publish(staged)
    return older


def test_staleness_follows_the_bot_folder(shop_home: Path, shop_copy: Path) -> None:
    """The model is current for the folder it was trained on, stale once bot.yml changes."""
    registry = Registry(shop_home / "models")
    assert not is_stale(SHOP, registry)
    assert not is_stale(shop_copy, registry)  # same content, other place
    (shop_copy / "bot.yml").write_text((shop_copy / "bot.yml").read_text() + "\n# edited\n")
    assert is_stale(shop_copy, registry)
    assert is_stale(SHOP, Registry(shop_copy / "no-models"))


def test_staleness_follows_the_training_options(shop_home: Path, tmp_path: Path) -> None:
    """Given the options `frontdesk train` was asked for, the model is stale when it was
    trained with others (`--layers`, `--context`, ...), not when only the device differs;
    an option a bundle predates counts as its default."""
    from training.args import TrainingArguments

    registry = Registry(shop_home / "models")
    asked = TrainingArguments(epochs=4)  # what the fixture trained with
    assert not is_stale(SHOP, registry, asked)
    assert not is_stale(SHOP, registry, replace(asked, device="cpu"))
    assert is_stale(SHOP, registry, replace(asked, layers=3))
    assert is_stale(SHOP, registry, replace(asked, context="fused"))
    assert is_stale(SHOP, registry, TrainingArguments())  # auto epochs, not 4

    older = _republished(registry, tmp_path / "models", lambda m: m["training_args"].pop("layers"))
    assert not is_stale(SHOP, older, asked)
    assert is_stale(SHOP, older, replace(asked, layers=4))

    # a bundle from before few-example bots kept the base encoder: it fine-tuned whatever
    # the rows, so asking for the defaults now asks for another model
    def before_probes(manifest: dict[str, Any]) -> None:
        for name in (
            "fine_tune_min_rows",
            "fine_tune_min_valid_rows",
            "probe_steps",
            "probe_learning_rate",
        ):
            manifest["training_args"].pop(name)

    oldest = _republished(registry, tmp_path / "oldest", before_probes)
    assert is_stale(SHOP, oldest, asked)
    as_before = replace(asked, fine_tune_min_rows=0, fine_tune_min_valid_rows=0, probe_steps=0)
    assert not is_stale(SHOP, oldest, as_before)

    # nor was a head fitted alone fitted again with its validation rows; that changes
    # nothing for a fine-tuned bundle (the fixture's: 4 epochs)
    def before_refit(epochs: int) -> Callable[[dict[str, Any]], None]:
        def edit(manifest: dict[str, Any]) -> None:
            manifest["training_args"].pop("refit_head")
            manifest["epochs"] = epochs

        return edit

    head_alone = _republished(registry, tmp_path / "head-alone", before_refit(0))
    assert is_stale(SHOP, head_alone, asked)
    assert not is_stale(SHOP, head_alone, replace(asked, refit_head=False))
    tuned = _republished(registry, tmp_path / "tuned", before_refit(4))
    assert not is_stale(SHOP, tuned, asked)


def test_staleness_follows_the_chat_logs(shop_home: Path, tmp_path: Path) -> None:
    """The model is stale once the chat logs it would be indexed from hold something else:
    a log that grew, another log added; the same bytes elsewhere are the same logs. A bundle
    from before logs were fingerprinted is current for the bot folder's own log only."""
    registry = Registry(shop_home / "models")
    default_log = SHOP / "dialogues.jsonl"
    copy = tmp_path / "exported.jsonl"
    shutil.copyfile(default_log, copy)
    assert not is_stale(SHOP, registry, logs=[default_log])
    assert not is_stale(SHOP, registry, logs=[copy])
    assert is_stale(SHOP, registry, logs=[default_log, copy])
    assert is_stale(SHOP, registry, logs=[])
    with copy.open("a") as out:
        out.write('{"id": "new-1", "turns": [{"role": "customer", "text": "hi"}]}\n')
    assert is_stale(SHOP, registry, logs=[copy])

    folder = tmp_path / "star"  # a folder of logs: every file in it counts
    (folder / "dialogues").mkdir(parents=True)
    (folder / "dialogues" / "1.json").write_text("{}")
    first = logs_digest([folder])
    (folder / "dialogues" / "2.json").write_text("{}")
    second = logs_digest([folder])
    (folder / "dialogues" / "2.json").write_text("[]")
    assert len({first, second, logs_digest([folder])}) == 3

    older = _republished(registry, tmp_path / "models", lambda m: m.pop("logs_digest"))
    assert not is_stale(SHOP, older)
    assert is_stale(SHOP, older, logs=[default_log])


def test_broken_bundle_is_refused(shop_home: Path, tmp_path: Path) -> None:
    """A bundle with a missing part raises BundleError naming the part."""
    source = Registry(shop_home / "models").current_path()
    assert source is not None
    broken = tmp_path / "v0001"
    shutil.copytree(source, broken)
    (broken / "intent_head.npz").unlink()
    with pytest.raises(BundleError, match=r"intent_head\.npz"):
        Bundle.load(broken)
    (broken / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match="manifest"):
        Bundle.load(broken)


def test_a_model_for_other_intents_serves_with_the_bot_it_was_trained_for(
    shop_home: Path, shop_copy: Path, tmp_path: Path
) -> None:
    """After a bot.yml edit that renames an intent, the model (not trained again yet)
    serves with the snapshot of the bot definition it carries: its own intents and
    responses, the live folder's root (actions, canned replies)."""
    text = (shop_copy / "bot.yml").read_text()
    text = text.replace("  bot_challenge:", "  is_bot:").replace(
        "utter_bot_challenge", "utter_is_bot"
    )
    (shop_copy / "bot.yml").write_text(text)
    _, served = load_serving(shop_home / "models", load_bot(shop_copy))
    assert "bot_challenge" in {i.name for i in served.intents}
    assert "is_bot" not in {i.name for i in served.intents}
    assert served.root == shop_copy
    assert served.response_for(served.intent("bot_challenge")) is not None
    # unchanged intents: the bot folder's own definition serves (response edits go live)
    _, live = load_serving(shop_home / "models", load_bot(SHOP))
    assert live.root == SHOP


def test_model_for_other_intents_without_a_snapshot_is_refused(
    shop_home: Path, shop_copy: Path, tmp_path: Path
) -> None:
    """A bundle that carries no bot definition and does not fit bot.yml is refused,
    naming what is missing."""
    models = tmp_path / "models"
    shutil.copytree(shop_home / "models", models)
    current = Registry(models).current_path()
    assert current is not None
    shutil.rmtree(current / "bot")
    text = (shop_copy / "bot.yml").read_text()
    text = text.replace("  bot_challenge:", "  is_bot:").replace(
        "utter_bot_challenge", "utter_is_bot"
    )
    (shop_copy / "bot.yml").write_text(text)
    with pytest.raises(
        NotReady, match="not in the model: is_bot; only in the model: bot_challenge"
    ):
        load_current_bundle(models, load_bot(shop_copy))


def test_no_model_says_how_to_train(tmp_path: Path) -> None:
    """With an empty registry the error tells the user which command to run."""
    with pytest.raises(NotReady, match="frontdesk train"):
        load_current_bundle(tmp_path / "models", load_bot(SHOP))


def test_head_round_trips(shop_bundle: Any, tmp_path: Path) -> None:
    """The intent head saves and loads without changing a number."""
    from retrieval.intent_head import IntentHead

    shop_bundle.head.save(tmp_path / "head.npz")
    loaded = IntentHead.load(tmp_path / "head.npz")
    assert loaded.labels == shop_bundle.head.labels
    np.testing.assert_array_equal(loaded.weight, shop_bundle.head.weight)
    assert loaded.temperature == pytest.approx(shop_bundle.head.temperature)
    assert loaded.threshold == pytest.approx(shop_bundle.head.threshold)
    assert loaded.oos_label == shop_bundle.head.oos_label


def test_a_model_in_an_older_bundle_format_is_stale(shop_home: Path, tmp_path: Path) -> None:
    """`make demo` retrains (instead of failing to serve) after an upgrade of the format."""
    registry = _republished(
        Registry(shop_home / "models"), tmp_path / "models", lambda m: m.update(format=1)
    )
    assert is_stale(SHOP, registry)
    written = registry.current_path() / MANIFEST  # type: ignore[operator]
    written.write_text(written.read_text().replace('"format": 1', f'"format": {FORMAT}'))
    assert not is_stale(SHOP, registry)


def test_encoder_threads_reach_onnxruntime(shop_home: Path) -> None:
    """FRONTDESK_ENCODER_THREADS (settings.encoder_threads) sets the encoder's threads per
    pass; 0, the default, leaves the choice to onnxruntime."""
    from retrieval.onnx_encoder import OnnxEncoder

    for threads in (1, 0):
        bundle = load_current_bundle(shop_home / "models", load_bot(SHOP), threads=threads)
        encoder = bundle.encoder  # type: ignore[attr-defined]
        assert isinstance(encoder, OnnxEncoder)
        options = encoder.session.get_session_options()
        assert options.intra_op_num_threads == threads


def test_train_context_flag_reaches_the_bundle(
    shop_home: Path, shop_copy: Path, tmp_path: Path
) -> None:
    """`frontdesk train --context fused` indexes fused windows and says so in the manifest;
    the default stays joint."""
    from channels.cli import main

    home = tmp_path / "home"
    code = main(["train", "--bot", str(shop_copy), "--home", str(home), "--epochs", "0",
                 "--context", "fused", "--json"])  # fmt: skip
    assert code == 0
    bundle = load_current_bundle(home / "models", load_bot(shop_copy))
    assert bundle.context_encoding.fused
    assert bundle.manifest["training_args"]["context"] == "fused"
    (analysis,) = bundle.analyze(
        ["do you offer gift wrapping?"], ["customer: do you offer gift wrapping?"]
    )
    assert "Gift wrap" in analysis.replies[0].text
    default = Registry(shop_home / "models").current_path()
    assert default is not None
    assert json.loads((default / MANIFEST).read_text())["context_encoding"]["mode"] == "joint"


def test_train_layers_flag_builds_a_shallower_bundle(shop_copy: Path, tmp_path: Path) -> None:
    """`frontdesk train --layers 2`: the bundle's encoder (and so its index) is two layers
    deep, the manifest says so, and the bundle serves."""
    from channels.cli import main

    home = tmp_path / "home"
    code = main(["train", "--bot", str(shop_copy), "--home", str(home), "--epochs", "0",
                 "--layers", "2", "--json"])  # fmt: skip
    assert code == 0
    bundle = load_current_bundle(home / "models", load_bot(shop_copy))
    config = json.loads((bundle.path / "encoder" / "config.json").read_text())
    assert config["num_hidden_layers"] == 2
    assert bundle.manifest["training_args"]["layers"] == 2
    (analysis,) = bundle.analyze(["where is my order 1042?"])
    assert analysis.intents and analysis.replies


def _topic_logs(path: Path, topics: int = 60, wordings: int = 5) -> Path:
    """A chat log of ``topics`` questions, each asked in ``wordings`` conversations and
    always answered alike: enough (context, reply) pairs to train the ranker on."""
    asks = ("can you tell me about {}?", "question on {}", "{} - how does it work",
            "I need help with {}", "what about {} please")  # fmt: skip
    # replies that differ only in numbers are one canned answer: name the topics in words
    colours = ("red", "blue", "green", "gold", "grey", "pink")
    things = ("lamp", "mug", "rug", "sofa", "desk", "vase", "bed", "cup", "tray", "pan")
    names = [f"{a} {b}" for a in colours for b in things]
    with path.open("w", encoding="utf-8") as out:
        for t in range(topics):
            for w in range(wordings):
                turns = [
                    {"role": "customer", "text": asks[w % len(asks)].format(names[t])},
                    {"role": "agent", "text": f"Here is how the {names[t]} works: {names[t]}."},
                ]
                record = {"id": f"t{t}-{w}", "channel": "web", "started_at": None, "turns": turns}
                out.write(json.dumps(record) + "\n")
    return path


@pytest.mark.parametrize(
    ("epochs", "driver"),
    [(0, "ranker"), (2, "intents")],
    ids=["few-intent-rows-logs-drive", "intents-drive-logs-along"],
)
def test_train_fine_tunes_one_encoder_on_the_intents_and_the_logs(
    shop_copy: Path, tmp_path: Path, epochs: int, driver: str
) -> None:
    """`frontdesk train --logs` with enough pairs trains the encoder on both objectives in
    one loop (the larger task's loop drives, the other adds a batch a step); the one
    bundle serves both, and its manifest records what each objective did."""
    from training.args import TrainingArguments
    from training.pipeline import train_bot

    logs = _topic_logs(tmp_path / "chats.jsonl")
    registry = Registry(tmp_path / "models")
    result = train_bot(
        shop_copy,
        registry,
        logs=[logs],
        args=TrainingArguments(epochs=epochs, layers=2),
        progress=False,
    )
    assert result.ranker_trained
    manifest = json.loads((result.path / MANIFEST).read_text())
    ranker = manifest["ranker"]
    assert ranker["driver"] == driver and ranker["trained"]
    assert ranker["train_pairs"] == 300
    if driver == "ranker":  # its own loop: the ranking loss fell epoch by epoch
        losses = [epoch["loss"] for epoch in ranker["history"]]
        assert len(losses) >= 2 and losses[-1] < losses[0]
    else:  # the intents' loop, each step with a ranking batch too
        losses = [epoch["loss"] for epoch in manifest["history"]]
        assert len(losses) == 2 and losses[-1] < losses[0]
    bundle = load_current_bundle(registry.root, load_bot(shop_copy))
    (analysis,) = bundle.analyze(["tell me about the blue vase"])
    assert analysis.intents and analysis.replies
