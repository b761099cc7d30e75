"""The micro-batcher: who shares an encoder pass, and what each caller gets back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from channels.inference import MicroBatcher
from retrieval.bundle import Analysis


class RecordingModel:
    """Answers each text with an intent named after it; records every batch it was given.
    ``hold`` (when set) keeps the first batch running until it is released."""

    version = "test"

    def __init__(self, hold: threading.Event | None = None, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.started = threading.Event()
        self.hold = hold
        self.fail_on = fail_on

    def analyze(
        self, texts: list[str], contexts: Sequence[str] | None = None, k: int = 5
    ) -> list[Analysis]:
        self.batches.append(list(texts))
        self.started.set()
        if self.hold is not None and len(self.batches) == 1:
            assert self.hold.wait(10), "the test never released the first batch"
        if self.fail_on in texts:
            raise RuntimeError(f"cannot analyse {self.fail_on!r}")
        contexts = contexts or [""] * len(texts)
        return [
            Analysis(intents=((f"{t}|{c}", 1.0),), out_of_scope=0.0, replies=())
            for t, c in zip(texts, contexts, strict=True)
        ]


async def _started(model: RecordingModel) -> None:
    """Until the first pass runs (a thread's event: waited for in a thread too)."""
    assert await asyncio.to_thread(model.started.wait, 10), "the batcher never ran"


async def test_without_a_wait_the_messages_that_arrive_during_a_pass_make_the_next_batch() -> None:
    """wait_ms 0 (the default): the first message goes alone at once; the ones that come
    while it runs share the next pass; each caller gets the answer to its own text."""
    hold = threading.Event()
    model = RecordingModel(hold)
    batcher = MicroBatcher(model)
    batcher.start()
    try:
        first = asyncio.create_task(batcher.analyze("a", "ctx-a"))
        await _started(model)
        rest = [asyncio.create_task(batcher.analyze(t)) for t in "bcde"]
        await asyncio.sleep(0.05)  # all four are queued behind the running pass
        hold.set()
        answers = await asyncio.gather(first, *rest)
    finally:
        await batcher.stop()
    assert model.batches == [["a"], ["b", "c", "d", "e"]]
    assert [o.intents[0].name for o in answers] == ["a|ctx-a", "b|", "c|", "d|", "e|"]
    assert batcher.batches == 2


async def test_batch_size_caps_a_pass() -> None:
    hold = threading.Event()
    model = RecordingModel(hold)
    batcher = MicroBatcher(model, batch_size=3)
    batcher.start()
    try:
        first = asyncio.create_task(batcher.analyze("0"))
        await _started(model)
        rest = [asyncio.create_task(batcher.analyze(str(i))) for i in range(1, 8)]
        await asyncio.sleep(0.05)
        hold.set()
        await asyncio.gather(first, *rest)
    finally:
        await batcher.stop()
    assert model.batches == [["0"], ["1", "2", "3"], ["4", "5", "6"], ["7"]]


async def test_a_wait_lets_near_simultaneous_messages_share_a_pass() -> None:
    model = RecordingModel()
    batcher = MicroBatcher(model, wait_ms=200)
    batcher.start()
    try:
        first = asyncio.create_task(batcher.analyze("x"))
        await asyncio.sleep(0.02)  # well inside the wait
        second = asyncio.create_task(batcher.analyze("y"))
        await asyncio.gather(first, second)
    finally:
        await batcher.stop()
    assert model.batches == [["x", "y"]]


async def test_a_failed_pass_fails_its_callers_only_and_the_batcher_goes_on() -> None:
    hold = threading.Event()
    model = RecordingModel(hold, fail_on="bad")
    batcher = MicroBatcher(model)
    batcher.start()
    try:
        first = asyncio.create_task(batcher.analyze("ok"))
        await _started(model)
        doomed = [asyncio.create_task(batcher.analyze(t)) for t in ("bad", "innocent")]
        await asyncio.sleep(0.05)
        hold.set()
        assert (await first).intents[0].name == "ok|"
        for task in doomed:
            with pytest.raises(RuntimeError, match="cannot analyse 'bad'"):
                await task
        after = await batcher.analyze("later")
    finally:
        await batcher.stop()
    assert after.intents[0].name == "later|"
    assert model.batches == [["ok"], ["bad", "innocent"], ["later"]]


async def test_with_two_workers_a_second_batch_runs_while_the_first_is_held() -> None:
    """workers=2: a message arriving while a pass runs gets its own pass at once instead of
    waiting for the first to end; with one worker it waits (the default)."""
    for workers, expected in ((2, [["a"], ["b"]]), (1, [["a"]])):
        hold = threading.Event()
        model = RecordingModel(hold)
        batcher = MicroBatcher(model, workers=workers)
        batcher.start()
        try:
            first = asyncio.create_task(batcher.analyze("a"))
            await _started(model)
            second = asyncio.create_task(batcher.analyze("b"))
            await asyncio.sleep(0.1)
            assert model.batches == expected, workers
            hold.set()
            answers = await asyncio.gather(first, second)
        finally:
            await batcher.stop()
        assert [o.intents[0].name for o in answers] == ["a|", "b|"]
        assert model.batches == [["a"], ["b"]]


def test_a_batcher_without_workers_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        MicroBatcher(RecordingModel(), workers=0)


async def test_retired_waits_for_the_batches_still_running_on_a_swapped_out_model() -> None:
    hold = threading.Event()
    old, new = RecordingModel(hold), RecordingModel()
    batcher = MicroBatcher(old)
    batcher.start()
    try:
        first = asyncio.create_task(batcher.analyze("a"))
        await _started(old)
        batcher.swap(new)
        retired = asyncio.create_task(batcher.retired(old))
        await asyncio.sleep(0.05)
        assert not retired.done()  # its batch is still running
        hold.set()
        await asyncio.wait_for(retired, 5)
        await first
        assert (await batcher.analyze("b")).intents[0].name == "b|"
        await asyncio.wait_for(batcher.retired(new), 5)  # idle: nothing running on it
    finally:
        await batcher.stop()
    assert old.batches == [["a"]] and new.batches == [["b"]]
