"""Everything a running server holds, built once in the app's lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bot.definition import load_bot
from bot.engine import Engine
from bot.errors import BotError
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
from channels.recovery import Recovery
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
    recovery: Recovery = field(init=False)
    """Answers the customer messages a crash left unanswered (``channels.recovery``)."""
    messaging: Messaging = field(init=False)
    """The messaging apps' answers in flight and their shared HTTP client."""

    def __post_init__(self) -> None:
        self.watcher = ModelWatcher(self, 0.0)
        self.recovery = Recovery(self.service, self.settings)
        self.messaging = Messaging(self.bridge, self.settings)

    @classmethod
    async def start(
        cls, settings: Settings, model: Analyzer | None = None, metrics: Metrics | None = None
    ) -> Runtime:
        definition = load_bot(settings.bot)
        injected = model
        if model is None:
            loaded, definition = await asyncio.to_thread(
                load_serving,
                settings.models_dir,
                definition,
                settings.encoder_int8,
                settings.encoder_threads,
            )
            model = loaded
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
        if settings.recover_on_start:
            runtime.recovery.start()
        if settings.gc_freeze:
            heap.settle()
        return runtime

    async def stop(self) -> None:
        try:
            await self.watcher.stop()
            await self.recovery.stop()
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
    locks = RedisLocks(
        settings.redis_url,
        ttl_s=ttl,
        wait_s=max(60.0, 2 * ttl),
        max_connections=settings.redis_max_connections,
    )
    return bus, locks


def load_current_bundle(
    models_dir: Path, definition: BotDefinition, int8: bool = False, threads: int = 0
) -> Analyzer:
    """Load the registry's current bundle, checked to serve ``definition`` or the bot
    definition it was trained with (:func:`load_serving`)."""
    return load_serving(models_dir, definition, int8, threads)[0]


def load_serving(
    models_dir: Path, definition: BotDefinition, int8: bool = False, threads: int = 0
) -> tuple[Analyzer, BotDefinition]:
    """The registry's current bundle and the bot definition to serve it with
    (:func:`definition_for`)."""
    from retrieval.bundle import Bundle
    from retrieval.registry import Registry

    path = Registry(models_dir).current_path()
    if path is None:
        raise NotReady(
            f"no trained model in {models_dir}; run `frontdesk train --bot {definition.root}` "
            "(or `make demo`) first"
        )
    bundle = Bundle.load(path, int8, threads)
    served = definition_for(bundle.path, bundle.version, bundle.head.intents, definition)
    log.info(
        "loaded model bundle %s (%d intents, %d indexed turns)",
        bundle.version,
        len(bundle.head.intents),
        len(bundle.index),
    )
    return bundle, served


def definition_for(
    bundle: Path, version: str, trained: Sequence[str], live: BotDefinition
) -> BotDefinition:
    """The bot definition a bundle serves with.

    - The bot folder's (``live``) when the bundle was trained for its intents: edits to
      responses, thresholds and settings go live without retraining.
    - Otherwise the snapshot the bundle carries of the definition it was trained with (a
      rollback past an intent change, or a bot.yml edit not trained yet): its responses,
      thresholds and settings, whole, so its answers match its head; actions and canned
      replies still come from the bot folder (the snapshot keeps ``live``'s root).
    - A bundle without a snapshot that does not fit is refused (:class:`NotReady`)."""
    from retrieval.bundle import BOT_DIR

    defined = {intent.name for intent in live.intents}
    if set(trained) == defined:
        return live
    missing = ", ".join(sorted(defined - set(trained))) or "-"
    extra = ", ".join(sorted(set(trained) - defined)) or "-"
    differs = f"not in the model: {missing}; only in the model: {extra}"
    snapshot = bundle / BOT_DIR
    if snapshot.is_dir():
        try:
            own = load_bot(snapshot)
        except BotError as exc:
            raise NotReady(f"model {version}: its bot definition does not load: {exc}") from exc
        if {intent.name for intent in own.intents} == set(trained):
            log.warning(
                "model %s was trained for other intents than the bot folder's %s (%s): "
                "serving it with the bot definition it was trained with; train again to "
                "serve the bot folder's",
                version,
                live.name,
                differs,
            )
            return replace(own, root=live.root)
    raise NotReady(
        f"model {version} was trained for other intents than {live.name} ({differs}); "
        "retrain the bot"
    )
