"""Intent examples that people reviewed: the agents' tags and the messages they answered
after a low-confidence hand-over, accepted (or rejected) by ``frontdesk tags review``.

They live in the bot folder's ``reviewed.jsonl``, one decision a line::

    {"key": "c_81f...#4", "text": "can you gift wrap it?", "intent": "gift_wrap",
     "decision": "accepted", "source": "tag", "at": "2026-12-07T09:12:00+00:00"}

``frontdesk train`` learns from the accepted lines whose intent bot.yml declares, beside
bot.yml's own examples; ``key`` (conversation id and message seq) keeps a message from being
proposed twice. An intent bot.yml does not declare waits until it is declared, with a
response; an intent the current model does not know yet is trained only once it has at
least ``TrainingArguments.new_intent_min_examples`` examples (bot.yml's and reviewed).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from training.errors import TrainingError

REVIEWED_FILE = "reviewed.jsonl"
ACCEPTED, REJECTED = "accepted", "rejected"


@dataclass(frozen=True)
class Review:
    key: str
    """``conversation_id#seq`` of the customer message."""
    text: str
    intent: str | None
    decision: str
    source: str
    """``tag`` (an agent's tag in the console) or ``low_confidence`` (a message the bot
    handed over unsure of it, that an agent answered)."""
    at: str

    def to_line(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def read_reviews(bot_dir: Path) -> list[Review]:
    """Every decision of the bot folder's ``reviewed.jsonl`` (none without the file)."""
    path = bot_dir / REVIEWED_FILE
    if not path.is_file():
        return []
    reviews: list[Review] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            review = Review(**{k: raw[k] for k in Review.__dataclass_fields__})
        except (ValueError, KeyError, TypeError) as exc:
            raise TrainingError(f"{path}:{number}: not a review line ({exc})") from None
        if review.decision not in (ACCEPTED, REJECTED) or not isinstance(review.text, str):
            raise TrainingError(
                f"{path}:{number}: decision must be {ACCEPTED!r} or {REJECTED!r} with a text"
            )
        if review.decision == ACCEPTED and not review.intent:
            raise TrainingError(f"{path}:{number}: an accepted example needs its intent")
        reviews.append(review)
    return reviews


def record(bot_dir: Path, reviews: Iterable[Review]) -> int:
    """Append decisions to the bot folder's ``reviewed.jsonl`` (one ``write`` of whole
    lines, so a crash leaves the earlier lines whole). -> lines written."""
    lines = [review.to_line() + "\n" for review in reviews]
    if lines:
        fd = os.open(bot_dir / REVIEWED_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write("".join(lines))
    return len(lines)


def decided_keys(bot_dir: Path) -> set[str]:
    return {review.key for review in read_reviews(bot_dir)}


def now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class ReviewedRows:
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    waiting: Mapping[str, int]
    """Accepted examples of intents bot.yml does not declare, by intent: not trained."""


def reviewed_rows(bot_dir: Path, declared: Iterable[str]) -> ReviewedRows:
    """The accepted examples of declared intents (the latest decision about a message
    counts), and a count of those waiting for their intent to be declared."""
    known = set(declared)
    latest: dict[str, Review] = {}
    for review in read_reviews(bot_dir):
        latest[review.key] = review
    texts: list[str] = []
    labels: list[str] = []
    waiting: Counter[str] = Counter()
    for review in latest.values():
        if review.decision != ACCEPTED or review.intent is None:
            continue
        if review.intent in known:
            texts.append(review.text)
            labels.append(review.intent)
        else:
            waiting[review.intent] += 1
    return ReviewedRows(tuple(texts), tuple(labels), dict(waiting))


def too_few_for_new_intents(
    labels: Iterable[str], known_before: Iterable[str], minimum: int
) -> dict[str, int]:
    """Intents the earlier model did not know that have fewer than ``minimum`` examples
    in ``labels``: intent -> examples."""
    counts = Counter(labels)
    before = set(known_before)
    return {name: n for name, n in sorted(counts.items()) if name not in before and n < minimum}
