"""The evaluation gate: a candidate bundle becomes ``current`` only if it is not worse.

``frontdesk train`` publishes what it trained as a candidate; the gate then scores the
current bundle and the candidate, each loaded as the server loads it, on one evaluation set
that neither learnt from:

- ``intent_accuracy``: the bot rows the candidate held out, less those the current bundle
  trained on (both bundles record their rows: ``training.continual``);
- ``recall@1``: 1-of-100 response ranking on the conversations the candidate's ranking
  objective held out, less those the current bundle trained on (each case's own
  conversation left out of the index's evidence, as both bundles indexed it);
- ``tests``: the share of the bot folder's conversation tests passed
  (``bot.conversation_tests``, run through the serving path).

Each check is also compared item by item: the **negative flip rate** is the share of checks
the current bundle got right and the candidate gets wrong. The candidate is promoted when
no metric drops by more than ``tolerance`` and the flip rate is at most ``max_flip_rate``;
otherwise ``current`` stays as it was and the verdict names each drop. The verdict is
written to the candidate's ``gate.json`` and ``reports/gate.md``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bot.conversation_tests import ConversationTest, StepResult
from bot.definition import load_bot
from channels.settings import Settings

if TYPE_CHECKING:
    from bot.types import BotDefinition
    from retrieval.bundle import Bundle

CHECKS = ("intent_accuracy", "recall@1", "tests")
REFUSED_EXIT = 3
"""``frontdesk train``'s exit status when the gate refuses the candidate."""


@dataclass(frozen=True)
class GateRules:
    tolerance: float = 0.01
    """The most any metric may drop (absolute: 0.01 is one point)."""
    max_flip_rate: float = 0.05
    """The most of the checks the current bundle gets right that the candidate may get wrong."""

    def __post_init__(self) -> None:
        if not 0 <= self.tolerance <= 1 or not 0 <= self.max_flip_rate <= 1:
            raise ValueError(
                f"gate tolerances must be within 0 and 1, got tolerance={self.tolerance}, "
                f"max_flip_rate={self.max_flip_rate}"
            )


@dataclass(frozen=True)
class Score:
    """One metric of both bundles on the same items."""

    name: str
    items: int
    current: float
    candidate: float

    @property
    def drop(self) -> float:
        return self.current - self.candidate


@dataclass(frozen=True)
class Flip:
    """A check the current bundle passed and the candidate fails."""

    check: str
    item: str
    detail: str = ""


@dataclass(frozen=True)
class Verdict:
    decision: str
    """``promoted``, ``refused``, ``forced`` (refused, promoted anyway) or ``first``."""
    candidate: str
    against: str | None
    scores: tuple[Score, ...] = ()
    flips: tuple[Flip, ...] = ()
    checked: int = 0
    """Items checked over all metrics (the flip rate's denominator)."""
    drops: tuple[str, ...] = ()
    """Why it was refused, one line each (empty when it passed)."""
    notes: tuple[str, ...] = field(default=())
    """Metrics that could not be measured, and why."""

    @property
    def flip_rate(self) -> float:
        return len(self.flips) / self.checked if self.checked else 0.0

    @property
    def passed(self) -> bool:
        return not self.drops

    def to_json(self) -> dict[str, object]:
        return {
            "decision": self.decision,
            "candidate": self.candidate,
            "against": self.against,
            "metrics": {
                s.name: {"current": s.current, "candidate": s.candidate, "items": s.items}
                for s in self.scores
            },
            "negative_flip_rate": self.flip_rate,
            "flips": [asdict(f) for f in self.flips],
            "checked": self.checked,
            "drops": list(self.drops),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Outcomes:
    """Per check: item -> (right?, what the bundle did)."""

    by_check: Mapping[str, Mapping[str, tuple[bool, str]]]


def decide(
    candidate: str,
    against: str,
    current: Outcomes,
    new: Outcomes,
    rules: GateRules,
    notes: Sequence[str] = (),
) -> Verdict:
    """The verdict from both bundles' outcomes on the same items (pure)."""
    scores: list[Score] = []
    flips: list[Flip] = []
    checked = 0
    for check in CHECKS:
        old_items, new_items = current.by_check.get(check), new.by_check.get(check)
        if not old_items or not new_items:
            continue
        items = sorted(set(old_items) & set(new_items))
        if not items:
            continue
        checked += len(items)
        scores.append(
            Score(
                check,
                len(items),
                sum(old_items[i][0] for i in items) / len(items),
                sum(new_items[i][0] for i in items) / len(items),
            )
        )
        flips.extend(
            Flip(check, i, new_items[i][1])
            for i in items
            if old_items[i][0] and not new_items[i][0]
        )
    drops = [
        f"{s.name} dropped {s.drop * 100:.1f} points ({s.current:.3f} -> {s.candidate:.3f} on "
        f"{s.items} items; tolerance {rules.tolerance * 100:.1f})"
        for s in scores
        if s.drop > rules.tolerance + 1e-12
    ]
    rate = len(flips) / checked if checked else 0.0
    if rate > rules.max_flip_rate + 1e-12:
        drops.append(
            f"negative flip rate {rate:.3f}: {len(flips)} of {checked} checks the current "
            f"bundle got right are wrong now (at most {rules.max_flip_rate:.3f})"
        )
    return Verdict(
        "refused" if drops else "promoted",
        candidate,
        against,
        tuple(scores),
        tuple(flips),
        checked,
        tuple(drops),
        tuple(notes),
    )


def evaluate(
    candidate: Path,
    current: Path,
    *,
    bot_dir: Path,
    logs: Sequence[Path],
    settings: Settings,
    rules: GateRules,
) -> Verdict:
    """Score both bundles (loaded as the server loads them) on the gate's evaluation set
    and decide (:func:`decide`)."""
    from bot.conversation_tests import bot_tests
    from channels.runtime import definition_for
    from retrieval.bundle import Bundle
    from training.continual import read_conversations, read_rows

    notes: list[str] = []
    bundles = {
        "current": Bundle.load(current, settings.encoder_int8, settings.encoder_threads),
        "candidate": Bundle.load(candidate, settings.encoder_int8, settings.encoder_threads),
    }
    outcomes: dict[str, dict[str, dict[str, tuple[bool, str]]]] = {k: {} for k in bundles}

    new_rows, old_rows = read_rows(candidate), read_rows(current)
    trained_before = {
        t for t, held in zip(old_rows.texts, old_rows.held_out, strict=True) if not held
    }
    rows = [
        (t, y)
        for t, y, held in zip(new_rows.texts, new_rows.labels, new_rows.held_out, strict=True)
        if held and t not in trained_before
    ]
    if rows:
        for name, bundle in bundles.items():
            outcomes[name]["intent_accuracy"] = _intent_outcomes(bundle, rows)
    else:
        notes.append("intent_accuracy: no bot rows held out from both bundles")

    held = read_conversations(candidate)[1] - read_conversations(current)[0]
    if held and logs:
        for name, bundle in bundles.items():
            found = _ranking_outcomes(bundle, logs, held)
            if found:
                outcomes[name]["recall@1"] = found
        if "recall@1" not in outcomes["candidate"]:
            notes.append("recall@1: too few held-out conversations to rank")
    else:
        notes.append("recall@1: no conversations held out from both bundles")

    tests = bot_tests(bot_dir)
    if tests:
        live = load_bot(bot_dir)
        for name, bundle in bundles.items():
            definition = definition_for(bundle.path, bundle.version, bundle.head.intents, live)
            outcomes[name]["tests"] = _test_outcomes(tests, bundle, definition, settings)
    else:
        notes.append(f"tests: the bot folder has no {bot_dir / 'tests.yml'}")
    return decide(
        candidate.name,
        current.name,
        Outcomes(outcomes["current"]),
        Outcomes(outcomes["candidate"]),
        rules,
        notes,
    )


def _intent_outcomes(
    bundle: Bundle, rows: Sequence[tuple[str, str]]
) -> dict[str, tuple[bool, str]]:
    from training.intent_data import IntentRows
    from training.intent_eval import served_predictions

    p = served_predictions(bundle, IntentRows(tuple(t for t, _ in rows), tuple(y for _, y in rows)))
    return {
        text: (got == truth, f"answered as {got}")
        for (text, _), truth, got in zip(rows, p.truth, p.final, strict=True)
    }


def _ranking_outcomes(
    bundle: Bundle, logs: Sequence[Path], held: frozenset[str]
) -> dict[str, tuple[bool, str]]:
    from training.dialogue_eval import ranking_cases, ranks, score_served
    from training.dialogue_model import read_all, redaction_of
    from training.errors import TrainingError

    chat_logs = [log for log in read_all(logs)[0] if log.id in held]
    try:
        cases = ranking_cases(chat_logs, redact=redaction_of(bundle), redact_contexts=False)
    except TrainingError:
        return {}
    rank = ranks(score_served(bundle, cases, leave_out_own=True))
    return {
        f"{case.conversation_id}: {case.context[-60:]}": (int(r) == 1, f"true reply ranked {r}")
        for case, r in zip(cases, rank, strict=True)
    }


def _test_outcomes(
    tests: Sequence[ConversationTest],
    bundle: Bundle,
    definition: BotDefinition,
    settings: Settings,
) -> dict[str, tuple[bool, str]]:
    from channels.conversation_tests import run_tests

    run = asyncio.run(run_tests(tests, bundle, definition, settings))
    return {r.key: (r.passed, _did(r)) for r in run.results}


def _did(result: StepResult) -> str:
    return f"{result.customer!r}: expected {result.expect}, got {result.got}"


def write_verdict(folder: Path, verdict: Verdict) -> None:
    """``gate.json`` and ``reports/gate.md`` into the candidate's folder, each written as a
    new file (published bundles share files: ``retrieval.registry``)."""
    from retrieval.registry import GATE_FILE

    _replace(folder / GATE_FILE, json.dumps(verdict.to_json(), indent=2) + "\n")
    _replace(folder / "reports" / "gate.md", report(verdict))


def report(verdict: Verdict) -> str:
    """The gate's verdict as Markdown: metric by metric, then the flipped answers."""
    lines = [
        f"# Gate: {verdict.candidate} against {verdict.against or '(no current model)'}",
        "",
        f"Decision: **{verdict.decision}**",
        "",
    ]
    if verdict.scores:
        lines += ["| metric | items | current | candidate | change |", "|---|---|---|---|---|"]
        lines += [
            f"| {s.name} | {s.items} | {s.current:.3f} | {s.candidate:.3f} | "
            f"{-s.drop * 100:+.1f} points |"
            for s in verdict.scores
        ]
        lines += ["", f"Negative flip rate: {verdict.flip_rate:.3f} ({len(verdict.flips)} of "
                  f"{verdict.checked} checks)", ""]  # fmt: skip
    for drop in verdict.drops:
        lines.append(f"- refused: {drop}")
    for note in verdict.notes:
        lines.append(f"- not measured: {note}")
    if verdict.flips:
        lines += ["", "## Right before, wrong now", "", "| check | item | candidate |",
                  "|---|---|---|"]  # fmt: skip
        lines += [f"| {f.check} | {_cell(f.item)} | {_cell(f.detail)} |" for f in verdict.flips]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
