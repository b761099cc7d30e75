"""Demo bot: the share of held-out shop questions it answers right, over the REST channel.

Trains examples/shop into a fresh FRONTDESK_HOME (`frontdesk train --bot examples/shop`),
serves it with `frontdesk serve` on a free port, asks every question of
tests/data/shop_questions.yml (or --questions FILE, same format) over
POST /webhooks/rest/webhook, a new sender per question with its earlier turns sent first,
and prints one line per question (expected, right/WRONG, what came back and how the reply
starts), then the share right overall and by category (intent / past / out_of_scope).
--json prints a JSON summary instead. Exits 0 whatever the score.

    python benchmarks/demo_questions.py [--questions FILE] [--home DIR] [--json]

--home reuses a FRONTDESK_HOME that already holds a trained demo bot (else trains into it).
The judging is benchmarks/_questions.py, shared with tests/channels/test_demo_questions.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _questions import (
    QUESTIONS,
    SHOP,
    Judge,
    ask_all,
    load_questions,
    score_lines,
    summary,
    table,
    wrong_report,
)
from _server import Server, ensure_trained, machine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=QUESTIONS, help="question file")
    parser.add_argument("--home", type=Path, help="FRONTDESK_HOME to reuse (default: fresh)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    args = parser.parse_args()

    questions = load_questions(args.questions)
    judge = Judge(SHOP)
    judge.check(questions)
    fresh = args.home is None
    home = args.home or Path(tempfile.mkdtemp(prefix="frontdesk-questions-"))
    try:
        train_s = ensure_trained(home, SHOP)
        start = time.perf_counter()
        with Server(home, label="demo-questions") as server:
            verdicts = ask_all(server.url, questions, judge)
        ask_s = time.perf_counter() - start
    finally:
        if fresh:
            shutil.rmtree(home, ignore_errors=True)

    if args.json:
        result = {
            "questions_file": str(args.questions),
            "train_seconds": train_s,
            "ask_seconds": round(ask_s, 1),
            **machine(),
            **summary(verdicts),
        }
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print(table(verdicts))
    print()
    print(f"{args.questions}: {len(verdicts)} questions")
    print(score_lines(verdicts))
    wrong = wrong_report(verdicts)
    if wrong:
        print("\nwrong:\n" + wrong)
    return 0


if __name__ == "__main__":
    sys.exit(main())
