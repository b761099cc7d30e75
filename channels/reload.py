"""Hot swap of model bundles: a server follows the registry's ``current`` pointer.

Every ``reload_interval_s`` the watcher reads the pointer; when it names another version,
that bundle (and the bot definition to serve it with: the bot folder's, or the bundle's own
snapshot when it was trained for other intents) is loaded off the event loop, tried on one
message, and only then swapped in. A bundle that fails any step is refused: the old one
keeps serving, and the refused version is not retried until the pointer moves away and
back to it (a rollback, a promote). Conversations and connections are untouched by a
swap; the next batch uses the new model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.definition import load_bot
from bot.engine import Engine
from bot.types import BotDefinition
from channels import heap
from channels.inference import Analyzer

if TYPE_CHECKING:
    from channels.runtime import Runtime

log = logging.getLogger(__name__)

PROBE = "hello"
"""The message a new bundle must analyse before it serves customers."""


@dataclass
class SwapRecord:
    swaps: int = 0
    refused: dict[str, str] = field(default_factory=dict)
    """Version -> why it was refused."""


class ModelWatcher:
    def __init__(self, runtime: Runtime, interval_s: float) -> None:
        self.runtime = runtime
        self.interval_s = interval_s
        self.record = SwapRecord()
        self._task: asyncio.Task[None] | None = None
        self._pointer: str | None = None
        """The version the pointer named at the last check."""

    def start(self) -> None:
        if self._task is None and self.interval_s > 0:
            self._task = asyncio.create_task(self._run(), name="frontdesk-model-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except Exception:  # the watcher must outlive any one bad check
                log.exception("model watcher: check failed")

    async def check(self) -> bool:
        """Swap to the registry's current bundle if it is new and sound; True if swapped."""
        from retrieval.registry import Registry

        registry = Registry(self.runtime.settings.models_dir)
        version = await asyncio.to_thread(registry.current_version)
        serving = self.runtime.batcher.model.version
        if version != self._pointer:  # moved (a promote, a rollback): a refusal is retried
            self._pointer = version
            if version is not None:
                self.record.refused.pop(version, None)
        if version is None or version == serving or version in self.record.refused:
            return False
        try:
            model, definition = await asyncio.to_thread(self._load_and_try)
        except Exception as exc:
            self.record.refused[version] = str(exc)
            self.runtime.metrics.model_swaps.labels("refused").inc()
            log.error("model %s refused, still serving %s: %s", version, serving, exc)
            return False
        self.runtime.definition = definition
        self.runtime.service.engine = Engine(definition)
        old = self.runtime.batcher.model
        self.runtime.batcher.swap(model)
        self.record.swaps += 1
        self.runtime.metrics.model_swaps.labels("swapped").inc()
        log.info("model swapped: %s -> %s", serving, model.version)
        if self.runtime.settings.gc_freeze:
            # once its last batch is done, thaw the heap so that the old bundle (and any
            # cycles of its) can go, then freeze what is alive again
            await self.runtime.batcher.retired(old)
            del old
            heap.resettle()
        return True

    def _load_and_try(self) -> tuple[Analyzer, BotDefinition]:
        from channels.runtime import load_serving

        settings = self.runtime.settings
        model, definition = load_serving(
            settings.models_dir,
            load_bot(settings.bot),
            settings.encoder_int8,
            settings.encoder_threads,
        )
        model.analyze([PROBE], [PROBE])
        return model, definition
