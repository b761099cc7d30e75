"""The hand-over policy: signs of frustration, opening hours, and what the customer is told.

Pure functions over the conversation, the bot's ``handoff:`` settings and a time passed in:
no clock reads, no I/O. The engine uses them to decide; the channels ask the engine for the
:class:`~bot.types.HandoffNotice` once they know the queue (see docs/handoff.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from difflib import SequenceMatcher
from zoneinfo import ZoneInfo

from bot.errors import BotError
from bot.types import (
    Handoff,
    HandoffNotice,
    OpeningHours,
    QueueFacts,
    Role,
    Turn,
)

REPHRASE_MIN_WORDS = 3
"""Shorter messages ("hi", "ok", "thanks", "yes please") repeat without any frustration."""

SIMILARITY_MAX_CHARS = 1000
"""Only the start of a long message is compared (difflib is quadratic in the worst case)."""

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

Phrase = tuple[str, ...]


# --- frustration ----------------------------------------------------------------------------


def words(text: str) -> Phrase:
    """Lower-cased words, apostrophes dropped: ``"Isn't it?"`` -> ``("isnt", "it")``."""
    flat = text.lower().replace("\u2019", "").replace("'", "")
    return tuple(re.findall(r"\w+", flat))


def find_phrase(text: str, phrases: Sequence[tuple[str, Phrase]]) -> str | None:
    """The first of ``phrases`` (``(as written, words(...))``) found in ``text`` as whole
    words, or ``None``."""
    # words hold no spaces, so a phrase's words run in order in the message's exactly when
    # " a b " is in " ... a b ... "
    message = f" {' '.join(words(text))} "
    for written, phrase in phrases:
        if phrase and f" {' '.join(phrase)} " in message:
            return written
    return None


def similarity(a: str, b: str) -> float:
    """How alike two customer messages read, in [0, 1]: the higher of the word-set Jaccard
    index and difflib's ratio over the normalised text (which forgives typos and "where's"
    against "where is"). Messages naming different numbers ("order 1042" / "order 2002")
    are different questions: 0."""
    compared = _compared(a, b)
    if compared is None:
        return 0.0
    jaccard, matcher = compared
    return max(jaccard, matcher.ratio())


def similar(a: str, b: str, threshold: float) -> bool:
    """``similarity(a, b) >= threshold``, without difflib's full (quadratic) ratio where
    its cheap upper bounds already decide: this runs on every customer message."""
    compared = _compared(a, b)
    if compared is None:
        return threshold <= 0.0
    jaccard, matcher = compared
    if jaccard >= threshold:
        return True
    return (
        matcher.real_quick_ratio() >= threshold
        and matcher.quick_ratio() >= threshold
        and matcher.ratio() >= threshold
    )


def _compared(a: str, b: str) -> tuple[float, SequenceMatcher[str]] | None:
    """The word-set Jaccard index and a matcher over the normalised texts, or ``None`` when
    the messages cannot be alike (one has no words, or they name different numbers)."""
    wa, wb = words(a[:SIMILARITY_MAX_CHARS]), words(b[:SIMILARITY_MAX_CHARS])
    if not wa or not wb:
        return None
    numbers_a = {w for w in wa if any(c.isdigit() for c in w)}
    numbers_b = {w for w in wb if any(c.isdigit() for c in w)}
    if numbers_a and numbers_b and numbers_a != numbers_b:
        return None
    sa, sb = set(wa), set(wb)
    jaccard = len(sa & sb) / len(sa | sb)
    return jaccard, SequenceMatcher(None, " ".join(wa), " ".join(wb), autojunk=False)


def rephrasings(turns: Sequence[Turn], text: str, threshold: float) -> int:
    """How many times in a row the customer has asked the same thing again after a bot
    answer, ending with ``text``: 0 for a new question, 1 for a first rephrasing...

    Only customer messages with a bot answer in between count (two lines sent before the
    bot answered are one question), an agent's turn ends the chain, and messages of fewer
    than :data:`REPHRASE_MIN_WORDS` words never count.
    """
    count = 0
    current = text
    i = len(turns) - 1
    while len(words(current)) >= REPHRASE_MIN_WORDS:
        answered = False
        while i >= 0 and turns[i].role is Role.BOT:
            answered = True
            i -= 1
        if not answered or i < 0 or turns[i].role is not Role.CUSTOMER:
            return count
        previous = turns[i].text
        if not similar(current, previous, threshold):
            return count
        count += 1
        current = previous
        i -= 1
    return count


# --- opening hours --------------------------------------------------------------------------


def next_opening(hours: OpeningHours, now: datetime) -> datetime | None:
    """``None`` if the team is working at ``now`` (an aware time), else when it is back: an
    aware time in the team's time zone."""
    if now.tzinfo is None:
        raise BotError(f"expected a timezone-aware time, got {now.isoformat()} without a zone")
    zone = ZoneInfo(hours.timezone)
    # Opening hours are wall-clock times: compare naive local times.
    local = now.astimezone(zone).replace(tzinfo=None)
    # Every week has an open slot (checked when bot.yml is loaded), so one is found within a
    # week past the closed dates.
    for offset in range(len(hours.closed_dates) + 8):
        for start, end in _slots(hours, local.date() + timedelta(days=offset)):
            if start <= local < end:
                return None
            if local < start:
                return start.replace(tzinfo=zone)
    raise BotError(f"opening hours in {hours.timezone} have no open slot in any week")


def _slots(hours: OpeningHours, day: date) -> Iterator[tuple[datetime, datetime]]:
    if day in hours.closed_dates:
        return
    for start, end in hours.weekly[day.weekday()]:
        yield _wall_clock(day, start), _wall_clock(day, end)


def _wall_clock(day: date, minutes: int) -> datetime:
    when = datetime(day.year, day.month, day.day)
    return when + timedelta(minutes=minutes)  # 1440: midnight at the end of the day


# --- what the customer is told ---------------------------------------------------------------


def notice(handoff: Handoff, queue: QueueFacts, now: datetime) -> HandoffNotice:
    """What happens next, for a customer who just joined the queue at ``now``: outside
    opening hours, when the team is back; inside, their place and the expected wait."""
    messages = handoff.messages
    hours = handoff.opening_hours
    if hours is not None:
        back = next_opening(hours, now)
        if back is not None:
            text = messages.closed.format(
                day=day_words(back, now.astimezone(back.tzinfo)),
                time=f"{back:%H:%M}",
                timezone=hours.timezone,
            )
            return HandoffNotice(text=text, open=False, position=queue.position, back_at=back)
    handle_s = queue.average_handle_s
    if handle_s is None:
        handle_s = handoff.average_handle_minutes * 60
    wait_s = max(queue.position, 1) * handle_s
    text = messages.queue.format(position=queue.position, wait=wait_words(wait_s))
    return HandoffNotice(
        text=text, open=True, position=queue.position, expected_wait_s=math.ceil(wait_s)
    )


def wait_words(seconds: float) -> str:
    """``200`` -> ``"4 minutes"``; rounded up to whole minutes, to hours from 90 minutes."""
    minutes = max(1, math.ceil(seconds / 60))
    if minutes >= 90:
        hours = round(minutes / 60)
        return f"{hours} hours"
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def day_words(when: datetime, today: datetime) -> str:
    """``today``, ``tomorrow``, a weekday name within the week, else ``Monday 5 January``."""
    days = (when.date() - today.date()).days
    if days == 0:
        return "today"
    if days == 1:
        return "tomorrow"
    name = DAY_NAMES[when.weekday()]
    if days < 7:
        return name
    return f"{name} {when.day} {MONTH_NAMES[when.month - 1]}"
