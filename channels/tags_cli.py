"""``frontdesk tags``: review the customer messages proposed as intent examples (agents'
tags, messages the bot was unsure of that an agent answered) into the bot folder's
``reviewed.jsonl``, which ``frontdesk train`` learns from (``training.reviewed``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from channels.settings import Settings
    from channels.tag_proposals import Proposal

HELP = (
    "Enter: accept the proposed intent; an intent name: accept as that intent; n: reject; "
    "s: skip for now; q: stop (decisions so far are kept)"
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``tags`` command group, under ``sub`` (the ``frontdesk`` subcommands)."""
    tags = sub.add_parser(
        "tags", help="review the agents' tags and unsure messages as new intent examples"
    )
    tsub = tags.add_subparsers(required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--bot", type=Path, help="bot folder (default: $FRONTDESK_BOT or examples/shop)"
        )
        p.add_argument(
            "--home", type=Path, help="data folder (default: $FRONTDESK_HOME or .frontdesk)"
        )

    listing = tsub.add_parser("list", help="the messages waiting for a review")
    common(listing)
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(run=_list)

    review = tsub.add_parser(
        "review",
        help="accept or reject each proposal (asks on the terminal; --accept-tagged: accept "
        "the agents' tags without asking)",
    )
    common(review)
    review.add_argument(
        "--accept-tagged",
        action="store_true",
        help="accept every message an agent tagged, with its tag, without asking (the "
        "unsure messages without a tag are left for a person)",
    )
    review.add_argument("--json", action="store_true", help="print the counts as JSON")
    review.set_defaults(run=_review)


def _pending(settings: Settings) -> list[Proposal]:
    from channels.store import Store
    from channels.tag_proposals import proposals
    from training.reviewed import decided_keys

    async def read() -> list[Proposal]:
        store = await Store.open(settings.store_url())
        try:
            return await proposals(store, decided=decided_keys(settings.bot))
        finally:
            await store.close()

    return asyncio.run(read())


def _list(args: argparse.Namespace) -> int:
    from channels.cli import _settings

    pending = _pending(_settings(args))
    if args.json:
        print(json.dumps({"pending": [p.__dict__ for p in pending]}))
        return 0
    for p in pending:
        print(f"{p.key}  {p.intent or '(no intent: unsure)':<24} {p.text}")
    print(f"{len(pending)} messages to review")
    return 0


def _review(args: argparse.Namespace) -> int:
    from channels.cli import _settings

    settings = _settings(args)
    counts = review(
        settings,
        _pending(settings),
        ask=None if args.accept_tagged else _ask_terminal,
        out=sys.stdout if not args.json else None,
    )
    if args.json:
        print(json.dumps(counts))
    else:
        print(
            f"accepted {counts['accepted']}, rejected {counts['rejected']}, left "
            f"{counts['left']} -> {settings.bot / 'reviewed.jsonl'}; `frontdesk train` learns "
            "from the accepted ones"
        )
    return 0


def review(
    settings: Settings,
    pending: list[Proposal],
    *,
    ask: Callable[[str], str | None] | None,
    out: Any,
) -> dict[str, int]:
    """Decide each proposal: ``ask`` (a prompt -> the answer, None at the end of input) or,
    without it, accept the tagged ones. Each decision is written at once (redacted as the
    bot's training redacts), so stopping loses nothing decided."""
    from bot.definition import load_bot
    from retrieval.redact import RedactionRules, Redactor
    from training.reviewed import ACCEPTED, REJECTED, Review, now, record

    definition = load_bot(settings.bot)
    spec = definition.redaction
    redact = Redactor(RedactionRules(spec.order_number, spec.keep, spec.phone_region))
    declared = {intent.name for intent in definition.intents}
    counts = {"accepted": 0, "rejected": 0, "left": 0}
    for number, proposal in enumerate(pending, 1):
        intent = proposal.intent
        if ask is None:
            decision = ACCEPTED if intent is not None else None
        else:
            label = f"tagged {intent}" if intent else "unsure, answered by an agent"
            if out is not None and number == 1:
                print(HELP, file=out)
            answer = ask(f"[{number}/{len(pending)}] {proposal.text!r} ({label}) > ")
            if answer is None or answer.strip() == "q":
                counts["left"] += len(pending) - number + 1
                break
            answer = answer.strip()
            if answer == "s" or (not answer and intent is None):
                decision = None
            elif answer == "n":
                decision = REJECTED
            else:
                intent, decision = answer or intent, ACCEPTED
        if decision is None:
            counts["left"] += 1
            continue
        record(
            settings.bot,
            [Review(proposal.key, redact(proposal.text), intent, decision, proposal.source, now())],
        )
        counts["accepted" if decision == ACCEPTED else "rejected"] += 1
        if decision == ACCEPTED and intent not in declared and out is not None:
            print(
                f"  {intent!r} is not an intent of bot.yml: its examples wait until it is "
                "declared there, with a response",
                file=out,
            )
    return counts


def _ask_terminal(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None
