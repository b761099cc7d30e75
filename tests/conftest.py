"""Shared fixtures: the demo bot trained once per session (a tiny real model)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "examples" / "shop"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def shop_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FRONTDESK_HOME whose registry holds the demo bot, trained once for the session."""
    from retrieval.registry import Registry
    from training.args import TrainingArguments
    from training.pipeline import train_bot

    home = tmp_path_factory.mktemp("home")
    train_bot(SHOP, Registry(home / "models"), args=TrainingArguments(epochs=4), progress=False)
    return home


@pytest.fixture(scope="session")
def shop_bundle(shop_home: Path) -> object:
    """The demo bundle, loaded once (bundles hold no conversation state)."""
    from bot.definition import load_bot
    from channels.runtime import load_current_bundle

    return load_current_bundle(shop_home / "models", load_bot(SHOP))


@pytest.fixture(scope="session")
def artifacts() -> Iterator[Path]:
    ARTIFACTS.mkdir(exist_ok=True)
    yield ARTIFACTS


@pytest.fixture
def shop_copy(tmp_path: Path) -> Path:
    """A private copy of the demo bot folder (tests may edit it)."""
    target = tmp_path / "shop"
    shutil.copytree(SHOP, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target
