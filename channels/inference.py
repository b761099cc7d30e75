"""Model inference off the event loop, in a micro-batcher (DESIGN §2).

Concurrent requests are analysed in one encoder pass on a worker thread, up to
``batch_size`` at a time; results are fanned out to the waiting callers. By default
(``wait_ms`` 0) a batch is whatever arrived while the previous one ran, so an idle server
answers at once and a busy one batches by itself; ``wait_ms`` > 0 also holds the first
request that long for company (slower when idle, no clear gain under load: BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import Protocol

from bot.types import Candidate, CandidateSource, IntentScore, ModelOutputs
from channels.metrics import Metrics
from retrieval.bundle import Analysis

log = logging.getLogger(__name__)


class Analyzer(Protocol):
    """What a model bundle offers the server (``retrieval.bundle.Bundle``)."""

    @property
    def version(self) -> str: ...

    def analyze(
        self, texts: list[str], contexts: list[str] | None = None, k: int = 5
    ) -> list[Analysis]: ...


def to_model_outputs(analysis: Analysis) -> ModelOutputs:
    """Retrieval's arrays-turned-values -> the engine's input."""
    return ModelOutputs(
        intents=tuple(
            IntentScore(name, p, analysis.support[i] if analysis.support else None)
            for i, (name, p) in enumerate(analysis.intents)
        ),
        out_of_scope=analysis.out_of_scope,
        candidates=tuple(
            Candidate(
                text=r.text,
                source=CandidateSource.RETRIEVAL,
                score=r.score,
                conversation_id=r.conversation_id,
                question=r.question or None,
            )
            for r in analysis.replies
        ),
        reply_threshold=analysis.reply_threshold,
    )


def _analyze(model: Analyzer, texts: list[str], contexts: list[str]) -> list[ModelOutputs]:
    """One batch on the inference thread, converted there too (it is per-message Python
    the event loop need not do)."""
    return [to_model_outputs(analysis) for analysis in model.analyze(texts, contexts)]


_Pending = tuple[str, str, asyncio.Future[ModelOutputs]]


class MicroBatcher:
    def __init__(
        self,
        model: Analyzer,
        *,
        wait_ms: float = 0.0,
        batch_size: int = 32,
        workers: int = 1,
        metrics: Metrics | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"the micro-batcher needs at least one worker, got {workers}")
        self.model = model
        self.wait_s = wait_ms / 1000.0
        self.batch_size = batch_size
        self.workers = workers
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0
        self.metrics = metrics
        self._running: Counter[int] = Counter()
        """Batches being analysed now, by ``id`` of their model."""
        self._retiring: dict[int, asyncio.Event] = {}
        """Set when the last running batch of that model is done (:meth:`retired`)."""

    def swap(self, model: Analyzer) -> None:
        """Use ``model`` from the next batch on (hot reload)."""
        self.model = model

    async def retired(self, model: Analyzer) -> None:
        """Until no batch is running on ``model`` (one swapped out finishes its batches)."""
        if self._running[id(model)] > 0:
            await self._retiring.setdefault(id(model), asyncio.Event()).wait()

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(), name=f"frontdesk-batcher-{i}")
                for i in range(self.workers)
            ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def analyze(self, text: str, context: str = "") -> ModelOutputs:
        """Model outputs for one message; ``context`` is its context window
        (``retrieval.pairs.context_text``, message included) or "" for none."""
        future: asyncio.Future[ModelOutputs] = asyncio.get_running_loop().create_future()
        await self._queue.put((text, context, future))
        return await future

    def _done_with(self, model: Analyzer) -> None:
        key = id(model)
        self._running[key] -= 1
        if self._running[key] == 0:
            del self._running[key]
            if (retiring := self._retiring.pop(key, None)) is not None:
                retiring.set()

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            deadline = asyncio.get_running_loop().time() + self.wait_s
            while len(batch) < self.batch_size:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            # drain whatever else is already waiting, up to the batch size
            while len(batch) < self.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            model = self.model
            self._running[id(model)] += 1
            started = time.perf_counter()
            try:
                results = await asyncio.to_thread(
                    _analyze, model, [text for text, _, _ in batch], [c for _, c, _ in batch]
                )
            except Exception as exc:
                log.exception("inference failed for a batch of %d", len(batch))
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            finally:
                # not held between batches: a model swapped out is freed once it is done
                self._done_with(model)
                del model
            self.batches += 1
            if self.metrics is not None:
                self.metrics.batch_size.observe(len(batch))
                self.metrics.inference_seconds.observe(time.perf_counter() - started)
            for (_, _, future), outputs in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(outputs)
