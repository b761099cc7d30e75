"""The hand-over policy: rephrasing, negative wording, opening hours and the queue notice.

Pure and table-driven: every time is passed in, nothing reads the clock.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot import handoff
from bot.errors import BotError
from bot.types import (
    DEFAULT_NEGATIVE_WORDS,
    Handoff,
    OpeningHours,
    QueueFacts,
    Role,
    Turn,
)

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
NINE_TO_SIX = ((9 * 60, 18 * 60),)
HOURS = OpeningHours(
    timezone="Europe/Berlin",
    weekly=(NINE_TO_SIX,) * 5 + (((10 * 60, 14 * 60),), ()),  # Mon-Fri 9-18, Sat 10-14
    closed_dates=frozenset({date(2026, 12, 25), date(2026, 12, 26)}),
)
NEGATIVE = tuple((p, handoff.words(p)) for p in DEFAULT_NEGATIVE_WORDS)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def turns(*items: tuple[Role, str]) -> tuple[Turn, ...]:
    return tuple(Turn(role, text, T0) for role, text in items)


C, B, A = Role.CUSTOMER, Role.BOT, Role.AGENT


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("This is useless", "useless"),
        ("you are NOT helpful at all", "not helpful"),
        ("it isn't helping", "isn't helping"),
        ("it isn’t helping", "isn't helping"),  # typographic apostrophe
        ("wtf, where is my parcel", "wtf"),
        ("this is a waste of time!", "waste of time"),
        ("that was helpful, thanks", None),  # "helpful" is not "not helpful"
        ("can I scrap my order", None),  # whole words only: no "crap" in "scrap"
        ("not useful?", None),
        ("where is my order", None),
    ],
)
def test_negative_wording(text: str, found: str | None) -> None:
    """Negative words and phrases are found as whole words, whatever the case."""
    assert handoff.find_phrase(text, NEGATIVE) == found


@pytest.mark.parametrize(
    ("a", "b", "alike"),
    [
        ("where is my refund", "where is my refund", True),
        ("where is my refund", "Where's my refund??", True),
        ("where is my refund", "where is my refund please?", True),
        ("how do I return an item", "how do I retrun an item", True),  # a typo
        ("where is my order 1042", "where is my order 2002", False),  # another order
        ("where is my refund", "how much is shipping to Austria", False),
        ("where is my refund", "", False),
    ],
)
def test_similarity(a: str, b: str, alike: bool) -> None:
    """Repeats, typos and small additions read as the same message; other numbers do not."""
    assert (handoff.similarity(a, b) >= 0.75) is alike
    assert handoff.similar(a, b, 0.75) is alike


def test_similar_decides_as_similarity_does() -> None:
    """The pruned check gives similarity's verdict at every threshold, over pairs of
    unrelated, reworded, mistyped and longer messages."""
    texts = [
        "where is my refund",
        "Where's my refund??",
        "how do I return an item",
        "how do I retrun an item i bought",
        "can I change the delivery address of my order",
        "change delivery address",
        "I want to talk to a person about my order 1042",
        "order 1042 never arrived",
        "do you ship to Austria",
        "shipping to austria how much",
        "aaaa bbbb cccc",
        "x" * 1200,
        "",
    ]
    thresholds = [0.0, 0.3, 0.5, 0.6, 0.75, 0.9, 1.0]
    for a in texts:
        for b in texts:
            value = handoff.similarity(a, b)
            for threshold in thresholds:
                assert handoff.similar(a, b, threshold) is (value >= threshold), (a, b, threshold)


@pytest.mark.parametrize(
    ("history", "text", "count"),
    [
        # one rephrasing is not yet frustration, but is counted
        (turns((C, "where is my refund"), (B, "Refunds take...")), "where's my refund?", 1),
        (
            turns(
                (C, "where is my refund"),
                (B, "Refunds take..."),
                (C, "where's my refund?"),
                (B, "Refunds go back..."),
            ),
            "WHERE IS MY REFUND",
            2,
        ),
        # a new question ends the chain
        (
            turns(
                (C, "where is my refund"),
                (B, "Refunds take..."),
                (C, "how much is shipping"),
                (B, "Shipping is..."),
            ),
            "where is my refund",
            0,
        ),
        # two lines before the bot answered are one question, not a rephrasing
        (
            turns(
                (C, "where is my refund"),
            ),
            "where is my refund",
            0,
        ),
        # an agent's turn ends the chain (after a hand-back)
        (
            turns((C, "where is my refund"), (A, "Done!"), (C, "where is my refund")),
            "where is my refund",
            0,
        ),
        # short messages repeat without frustration
        (turns((C, "hi"), (B, "Hello!"), (C, "hi"), (B, "Hi!")), "hi", 0),
        ((), "where is my refund", 0),
    ],
)
def test_rephrasings(history: tuple[Turn, ...], text: str, count: int) -> None:
    """Rephrasings count the customer's repeated question across bot answers."""
    assert handoff.rephrasings(history, text, 0.75) == count


@pytest.mark.parametrize(
    ("now", "back"),
    [
        (berlin(2026, 11, 23, 10, 0), None),  # Monday morning: open
        (berlin(2026, 11, 23, 9, 0), None),  # opening minute
        (berlin(2026, 11, 23, 18, 0), berlin(2026, 11, 24, 9, 0)),  # closing minute
        (berlin(2026, 11, 23, 7, 30), berlin(2026, 11, 23, 9, 0)),  # before opening: today
        (berlin(2026, 11, 28, 15, 0), berlin(2026, 11, 30, 9, 0)),  # Saturday afternoon
        (berlin(2026, 11, 29, 12, 0), berlin(2026, 11, 30, 9, 0)),  # Sunday
        (berlin(2026, 11, 28, 11, 0), None),  # Saturday late morning: open
        (berlin(2026, 12, 24, 20, 0), berlin(2026, 12, 28, 9, 0)),  # Christmas: closed dates
        # times in other zones are converted: 08:30 UTC is 09:30 in Berlin in winter...
        (datetime(2026, 11, 23, 8, 30, tzinfo=UTC), None),
        # ... and 07:30 UTC is 09:30 in summer time
        (datetime(2026, 7, 6, 7, 30, tzinfo=UTC), None),
        (datetime(2026, 7, 6, 6, 30, tzinfo=UTC), berlin(2026, 7, 6, 9, 0)),
    ],
)
def test_next_opening(now: datetime, back: datetime | None) -> None:
    """Opening hours are wall-clock times in the team's zone, with holidays closed."""
    assert handoff.next_opening(HOURS, now) == back


def test_next_opening_needs_an_aware_time() -> None:
    """A naive time is refused: the engine never guesses a time zone."""
    with pytest.raises(BotError, match="timezone-aware"):
        handoff.next_opening(HOURS, datetime(2026, 11, 23, 10, 0))


def test_next_opening_until_midnight() -> None:
    """24:00 closes at the end of the day."""
    late = replace(HOURS, weekly=(((20 * 60, 24 * 60),),) * 7, closed_dates=frozenset())
    assert handoff.next_opening(late, berlin(2026, 11, 23, 23, 59)) is None
    assert handoff.next_opening(late, berlin(2026, 11, 24, 0, 0)) == berlin(2026, 11, 24, 20, 0)


OPEN_ALWAYS = Handoff()
BUSINESS = Handoff(opening_hours=HOURS, average_handle_minutes=1.5)


@pytest.mark.parametrize(
    ("policy", "queue", "now", "text"),
    [
        (
            BUSINESS,
            QueueFacts(position=3),
            berlin(2026, 11, 23, 10, 0),
            "You are number 3 in the queue; an agent usually answers within about 5 minutes.",
        ),
        (
            OPEN_ALWAYS,
            QueueFacts(position=1),
            T0,
            "You are number 1 in the queue; an agent usually answers within about 3 minutes.",
        ),
        # an observed handle time beats the configured one
        (
            OPEN_ALWAYS,
            QueueFacts(position=2, average_handle_s=20),
            T0,
            "You are number 2 in the queue; an agent usually answers within about 1 minute.",
        ),
        (
            OPEN_ALWAYS,
            QueueFacts(position=40),
            T0,
            "You are number 40 in the queue; an agent usually answers within about 2 hours.",
        ),
        (
            BUSINESS,
            QueueFacts(position=3),
            berlin(2026, 11, 28, 15, 0),
            "Our team is back Monday at 09:00 (Europe/Berlin). We'll answer you right here, "
            "so you can close this page: the conversation is kept.",
        ),
        (
            BUSINESS,
            QueueFacts(position=1),
            berlin(2026, 11, 23, 19, 0),
            "Our team is back tomorrow at 09:00 (Europe/Berlin). We'll answer you right here, "
            "so you can close this page: the conversation is kept.",
        ),
        (
            BUSINESS,
            QueueFacts(position=1),
            berlin(2026, 11, 23, 6, 0),
            "Our team is back today at 09:00 (Europe/Berlin). We'll answer you right here, "
            "so you can close this page: the conversation is kept.",
        ),
    ],
)
def test_notice_text(policy: Handoff, queue: QueueFacts, now: datetime, text: str) -> None:
    """Inside opening hours the customer hears their place and wait; outside, when and how
    the team answers."""
    assert handoff.notice(policy, queue, now).text == text


def test_notice_facts() -> None:
    """The notice carries its facts for the channels (widget status line, agent console)."""
    inside = handoff.notice(BUSINESS, QueueFacts(position=3), berlin(2026, 11, 23, 10, 0))
    assert (inside.open, inside.position, inside.expected_wait_s, inside.back_at) == (
        True,
        3,
        270,
        None,
    )
    outside = handoff.notice(BUSINESS, QueueFacts(position=3), berlin(2026, 11, 28, 15, 0))
    assert not outside.open and outside.expected_wait_s is None
    assert outside.back_at == berlin(2026, 11, 30, 9, 0)


@pytest.mark.parametrize(
    ("days", "words"),
    [(0, "today"), (1, "tomorrow"), (2, "Wednesday"), (6, "Sunday"), (8, "Tuesday 1 December")],
)
def test_day_words(days: int, words: str) -> None:
    """Days are named the way a person would say them, relative to today."""
    today = berlin(2026, 11, 23, 20, 0)  # a Monday
    assert handoff.day_words(today + timedelta(days=days), today) == words


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (1, "1 minute"),
        (60, "1 minute"),
        (61, "2 minutes"),
        (89 * 60, "89 minutes"),
        (90 * 60, "2 hours"),
        (4 * 3600, "4 hours"),
    ],
)
def test_wait_words(seconds: float, words: str) -> None:
    """Waits round up to whole minutes, and read in hours from 90 minutes."""
    assert handoff.wait_words(seconds) == words
