"""Held-out shop questions asked over REST of the demo bot as `make demo` trains it: the
share answered right may not fall below what it is now."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from channels.settings import Settings
from tests.channels.server import running_server

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop"
REQUIRED_SHARE = 0.65
"""A floor, not the goal: the served-bundle issue asks for 0.90; with the defaults of
2026-12-07 the demo answers 0.68 of these (51 of 75, BENCHMARKS.md), up from 0.51."""

pytestmark = pytest.mark.slow


def _shared_judging() -> ModuleType:
    """benchmarks/_questions.py (not a package, so loaded from its file): the question file
    reader, the REST client and the judging that benchmarks/demo_questions.py uses too."""
    path = ROOT / "benchmarks" / "_questions.py"
    spec = importlib.util.spec_from_file_location("frontdesk_benchmarks_questions", path)
    assert spec is not None and spec.loader is not None
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while defined
        spec.loader.exec_module(module)
    return module


questions = _shared_judging()


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo bot trained with the defaults, as `make demo` trains it."""
    from retrieval.registry import Registry
    from training.pipeline import train_bot

    home = tmp_path_factory.mktemp("demo-home")
    train_bot(SHOP, Registry(home / "models"), progress=False)
    return home


def test_demo_bot_answers_held_out_questions(tmp_path: Path, demo_home: Path) -> None:
    """Intent, past-chat and off-topic questions none of the bot's files hold, each in a new
    conversation (follow-ups after their earlier turns), judged by their reply."""
    from bot.definition import load_bot
    from channels.runtime import load_current_bundle

    bundle: Any = load_current_bundle(demo_home / "models", load_bot(SHOP))
    asked = questions.load_questions(questions.QUESTIONS)
    judge = questions.Judge(SHOP)
    judge.check(asked)
    settings = Settings(
        home=demo_home,
        bot=SHOP,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        ip_request_rate="100000/minute",
    )
    with running_server(settings, model=bundle) as address:
        verdicts = questions.ask_all(f"http://{address}", asked, judge)

    result = questions.scores(verdicts)
    assert result["all"].share >= REQUIRED_SHARE, (
        f"right: {result['all']}, need {REQUIRED_SHARE:.0%}\n"
        f"{questions.score_lines(verdicts)}\nwrong answers:\n{questions.wrong_report(verdicts)}"
    )
