"""Hot swap: a server follows the registry's ``current`` pointer without dropping anyone."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import os
import shutil
import weakref
from pathlib import Path

import httpx
import numpy as np
import pytest

from channels.settings import Settings
from channels.store import Store, events
from retrieval.bundle import HEAD_FILE
from retrieval.intent_head import IntentHead
from retrieval.registry import Registry
from tests.channels.server import running_server
from tests.channels.test_ws import ask, hello


@pytest.fixture
def home(tmp_path: Path, shop_home: Path) -> Path:
    """A private registry holding a copy of the trained demo bundle as v0001."""
    home = tmp_path / "home"
    registry = Registry(home / "models")
    staging = tmp_path / "staging"
    shutil.copytree(Registry(shop_home / "models").current_path() or Path("-"), staging)
    registry.publish(staging)
    return home


def republish(
    registry: Registry, tmp_path: Path, name: str, swap: tuple[str, str] | None = None
) -> str:
    """The current bundle published again under a new version: the same model, or with the
    class vectors of the two intents in ``swap`` exchanged (a model that answers one
    intent's questions with the other's answer, so which bundle answered shows)."""
    staging = tmp_path / name
    shutil.copytree(registry.current_path() or Path("-"), staging)
    if swap is not None:
        head = IntentHead.load(staging / HEAD_FILE)
        a, b = (head.labels.index(intent) for intent in swap)
        weight = head.weight.copy()
        weight[[a, b]] = weight[[b, a]]
        dataclasses.replace(head, weight=weight).save(staging / HEAD_FILE)
    return registry.publish(staging)


async def models_of_bot_answers(db: Path) -> list[str]:
    store = await Store.open(f"sqlite+aiosqlite:///{db}")
    try:
        async with store.engine.connect() as conn:
            rows = (await conn.execute(events.select().order_by(events.c.id))).mappings().all()
    finally:
        await store.close()
    return [
        (row["payload"] or {}).get("model", "")
        for row in rows
        if row["role"] == "bot" and "model" in (row["payload"] or {})
    ]


async def wait_for_model(client: httpx.AsyncClient, base: str, version: str) -> None:
    async with asyncio.timeout(30):
        while True:  # the server runs in another thread: poll its readiness endpoint
            if (await client.get(f"http://{base}/readyz")).json()["model"] == version:
                return
            await asyncio.sleep(0.1)


async def test_swap_keeps_connections_and_refuses_a_broken_bundle(
    home: Path, tmp_path: Path
) -> None:
    db = tmp_path / "store.db"
    settings = Settings(
        home=home,
        bot=Path("examples/shop"),
        database_url=f"sqlite+aiosqlite:///{db}",
        reload_interval_s=0.2,
    )
    registry = Registry(home / "models")
    with running_server(settings) as base:
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://{base}/readyz")).json()["model"] == "v0001"
            ws, _ = await hello(base)
            first = await ask(ws, "a", "what does shipping cost?")
            assert "€4.95" in first[-1]["text"]

            # the next model mixes up shipping costs and delivery times
            new = republish(registry, tmp_path, "next", swap=("shipping_costs", "delivery_times"))
            assert new == "v0002"
            await wait_for_model(client, base, "v0002")
            second = await ask(ws, "b", "how much is shipping to Germany?")  # same connection
            assert "working days" in second[-1]["text"]  # the new model answered

            broken = tmp_path / "broken"
            broken.mkdir()
            (broken / "manifest.json").write_text(json.dumps({"format": "nonsense"}))
            assert registry.publish(broken) == "v0003"
            # give the watcher several turns to (fail to) load it
            await asyncio.sleep(1.5)
            ready = await client.get(f"http://{base}/readyz")
            assert ready.json()["model"] == "v0002"
            third = await ask(ws, "c", "can I return a jacket?")
            await ws.close()
    answers = await models_of_bot_answers(db)
    assert answers == ["v0001", "v0002", "v0002"]
    # different questions (the same one three times would be frustration: a handover)
    assert all(frames[-1]["text"] for frames in (first, second, third))


async def test_a_bundle_for_other_intents_is_refused(home: Path, tmp_path: Path) -> None:
    """The pointer moves to a bundle whose intents differ from bot.yml: refused, old serves."""
    from channels.runtime import Runtime

    settings = Settings(
        home=home,
        bot=Path("examples/shop"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        reload_interval_s=0,  # checks driven by the test
    )
    runtime = await Runtime.start(settings)
    try:
        registry = Registry(home / "models")
        version = republish(registry, tmp_path, "other")
        head = registry.path_of(version) / "intent_head.npz"
        assert head.exists()
        with np.load(head, allow_pickle=False) as data:
            arrays = dict(data)
        arrays["labels"] = np.array([f"x_{n}" for n in arrays["labels"]])
        # a new file, not the old one rewritten: published bundles share unchanged files
        np.savez(head.with_name("new_head.npz"), **arrays)
        os.replace(head.with_name("new_head.npz"), head)
        assert await runtime.watcher.check() is False
        assert runtime.batcher.model.version == "v0001"
        assert "trained for other intents" in runtime.watcher.record.refused[version]
        assert await runtime.watcher.check() is False  # not retried on every tick
        good = republish_from(registry, tmp_path, "v0001")
        assert await runtime.watcher.check() is True
        assert runtime.batcher.model.version == good
        assert runtime.watcher.record.swaps == 1
    finally:
        await runtime.stop()


def republish_from(registry: Registry, tmp_path: Path, version: str) -> str:
    staging = tmp_path / f"copy-{version}"
    shutil.copytree(registry.path_of(version), staging)
    return registry.publish(staging)


async def test_a_swap_leaves_the_old_bundle_collectable(home: Path, tmp_path: Path) -> None:
    """The server freezes its loaded heap out of the collector's way (channels/heap.py);
    a swap thaws it once the old bundle's batches are done, so the old bundle is freed
    even if it holds cycles, and freezes the new one."""
    from channels.runtime import Runtime

    settings = Settings(
        home=home,
        bot=Path("examples/shop"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        reload_interval_s=0,
    )
    before = gc.get_freeze_count()
    runtime = await Runtime.start(settings)
    try:
        assert gc.get_freeze_count() > before
        await runtime.batcher.analyze("where is my order?")  # a batch ran on the old model
        model = runtime.batcher.model
        model.cycle = model  # type: ignore[attr-defined]  # as a bundle's own cycles would
        old = weakref.ref(model)
        del model
        republish(Registry(home / "models"), tmp_path, "next")
        assert await runtime.watcher.check() is True
        gc.collect()
        assert old() is None
        assert gc.get_freeze_count() > 0
        assert (await runtime.batcher.analyze("where is my order?")).intents
    finally:
        await runtime.stop()
    assert gc.get_freeze_count() == before


async def test_gc_freeze_can_be_turned_off(home: Path, tmp_path: Path) -> None:
    from channels.runtime import Runtime

    settings = Settings(
        home=home,
        bot=Path("examples/shop"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        reload_interval_s=0,
        gc_freeze=False,
    )
    before = gc.get_freeze_count()
    runtime = await Runtime.start(settings)
    try:
        assert gc.get_freeze_count() == before
    finally:
        await runtime.stop()
