"""Everything a running server holds, built once in the app's lifespan."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from bot.definition import load_bot
from bot.engine import Engine
from bot.types import BotDefinition
from channels import heap
from channels.actions import ActionRunner, make_runner
from channels.bridge import ChannelBridge
from channels.bus import Bus, InProcessBus
from channels.errors import NotReady
from channels.inference import Analyzer, MicroBatcher
from channels.locks import ConversationLocks, InProcessLocks
from channels.messaging.dispatch import Messaging
from channels.metrics import Metrics
from channels.reload import ModelWatcher
from channels.service import ConversationService
from channels.settings import Settings
from channels.store import Store

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    definition: BotDefinition
    store: Store
    bus: Bus
    batcher: MicroBatcher
    actions: ActionRunner
    service: ConversationService
    bridge: ChannelBridge
    metrics: Metrics
    watcher: ModelWatcher = field(init=False)
    messaging: Messaging = field(init=False)
    """The messaging apps' answers in flight and their shared HTTP client."""

    def __post_init__(self) -> None:
        self.watcher = ModelWatcher(self, 0.0)
        self.messaging = Messaging(self.bridge, self.settings)

    @classmethod
    async def start(
        cls, settings: Settings, model: Analyzer | None = None, metrics: Metrics | None = None
    ) -> Runtime:
        definition = load_bot(settings.bot)
        injected = model
        if model is None:
            model = await asyncio.to_thread(
                load_current_bundle,
                settings.models_dir,
                definition,
                settings.encoder_int8,
                settings.encoder_threads,
            )
        store = await Store.open(settings.store_url())
        try:
            bus, locks = await make_bus_and_locks(settings)
        except BaseException:
            await store.close()
            raise
        metrics = metrics or Metrics()
        batcher = MicroBatcher(
            model,
            wait_ms=settings.batch_wait_ms,
            batch_size=settings.batch_size,
            workers=settings.inference_workers,
            metrics=metrics,
        )
        batcher.start()
        actions = make_runner(definition, settings.action_url)
        service = ConversationService(
            store, Engine(definition), batcher, actions, bus, metrics=metrics, locks=locks
        )
        bridge = ChannelBridge(service)
        runtime = cls(settings, definition, store, bus, batcher, actions, service, bridge, metrics)
        if injected is None:  # an injected model (tests, embedding) is not the registry's
            runtime.watcher = ModelWatcher(runtime, settings.reload_interval_s)
            runtime.watcher.start()
        if settings.gc_freeze:
            heap.settle()
        return runtime

    async def stop(self) -> None:
        try:
            await self.watcher.stop()
            await self.messaging.drain()  # before the service: its answers use the service
            await self.service.drain()
            await self.batcher.stop()
            await self.actions.aclose()
            await self.messaging.aclose()
            await self.bus.close()
            await self.service.locks.close()
            await self.store.close()
        finally:
            if self.settings.gc_freeze:
                heap.release()


async def make_bus_and_locks(settings: Settings) -> tuple[Bus, ConversationLocks]:
    """In-process bus and locks, or Redis ones when ``settings.redis_url`` is set."""
    if settings.redis_url is None:
        return InProcessBus(), InProcessLocks()
    from channels.locks import RedisLocks
    from channels.redis_bus import RedisBus

    bus = await RedisBus.connect(settings.redis_url)
    ttl = settings.lock_ttl_s
    return bus, RedisLocks(settings.redis_url, ttl_s=ttl, wait_s=2 * ttl)


def load_current_bundle(
    models_dir: Path, definition: BotDefinition, int8: bool = False, threads: int = 0
) -> Analyzer:
    """Load the registry's current bundle and check it was trained for ``definition``."""
    from retrieval.bundle import Bundle
    from retrieval.registry import Registry

    path = Registry(models_dir).current_path()
    if path is None:
        raise NotReady(
            f"no trained model in {models_dir}; run `frontdesk train --bot {definition.root}` "
            "(or `make demo`) first"
        )
    bundle = Bundle.load(path, int8, threads)
    trained = set(bundle.head.intents)
    defined = {intent.name for intent in definition.intents}
    if trained != defined:
        missing = ", ".join(sorted(defined - trained)) or "-"
        extra = ", ".join(sorted(trained - defined)) or "-"
        raise NotReady(
            f"model {bundle.version} was trained for other intents than {definition.name} "
            f"(not in the model: {missing}; only in the model: {extra}); retrain the bot"
        )
    log.info(
        "loaded model bundle %s (%d intents, %d indexed turns)",
        bundle.version,
        len(trained),
        len(bundle.index),
    )
    return bundle
