"""``frontdesk test``: run the bot folder's conversation tests (``bot.conversation_tests``)
against a bundle as the server serves it."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``test`` command, under ``sub`` (the ``frontdesk`` subcommands)."""
    test = sub.add_parser(
        "test",
        help="hold the bot folder's conversation tests (tests.yml) with the served model",
    )
    test.add_argument(
        "--bot", type=Path, help="bot folder (default: $FRONTDESK_BOT or examples/shop)"
    )
    test.add_argument(
        "--home", type=Path, help="data folder (default: $FRONTDESK_HOME or .frontdesk)"
    )
    test.add_argument(
        "--model",
        default="current",
        metavar="MODEL",
        help="the bundle to test: `current` (default), a version name (v0003) or a folder",
    )
    test.add_argument(
        "--tests", type=Path, help="a tests file (default: the bot folder's tests.yml)"
    )
    test.add_argument("--json", action="store_true", help="print one JSON object")
    test.set_defaults(run=_test)


def _test(args: argparse.Namespace) -> int:
    """Exit 0 when every check passes, 1 when one fails, 2 on bad input."""
    from bot.conversation_tests import TESTS_FILE, read_tests
    from bot.definition import load_bot
    from channels.cli import _settings
    from channels.conversation_tests import run_tests
    from channels.runtime import definition_for
    from retrieval.bundle import Bundle
    from retrieval.errors import BundleError
    from retrieval.registry import resolve_model

    settings = _settings(args)
    path = args.tests or settings.bot / TESTS_FILE
    if not path.is_file():
        raise BundleError(
            f"{path}: no conversation tests; write them as docs/retrain.md describes, or "
            "give --tests FILE"
        )
    tests = read_tests(path)
    bundle = Bundle.load(
        resolve_model(args.model, settings.models_dir).absolute(),
        settings.encoder_int8,
        settings.encoder_threads,
    )
    definition = definition_for(
        bundle.path, bundle.version, bundle.head.intents, load_bot(settings.bot)
    )
    run = asyncio.run(run_tests(tests, bundle, definition, settings))
    if args.json:
        print(
            json.dumps(
                {
                    "model": str(bundle.path),
                    "version": bundle.version,
                    "checks": len(run.results),
                    "passed": run.passed,
                    "share": run.share,
                    "failures": [
                        {
                            "test": r.test,
                            "step": r.step,
                            "customer": r.customer,
                            "expect": str(r.expect),
                            "got": r.got,
                        }
                        for r in run.failures()
                    ],
                }
            )
        )
    else:
        for r in run.failures():
            print(f"FAIL {r.test} (step {r.step}) {r.customer!r}: expected {r.expect}, got {r.got}")
        print(f"{run.passed} of {len(run.results)} checks passed with {bundle.version} ({path})")
    return 0 if run.passed == len(run.results) else 1
