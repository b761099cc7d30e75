"""The SQLite adapter of the store: one worker-thread round trip per statement, and otherwise
what SQLAlchemy's aiosqlite dialect does (rows, row counts, errors, transactions)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from channels import sqlite_driver
from channels.store import make_engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
    yield engine
    await engine.dispose()


def count_round_trips(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every call queued on aiosqlite's worker thread, from now on."""
    calls: list[Any] = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(fn)
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return calls


async def test_sqlite_urls_get_the_one_round_trip_dialect(engine: AsyncEngine) -> None:
    """The store's engine for ``sqlite+aiosqlite`` URLs runs on this module's dialect."""
    assert engine.dialect.driver == sqlite_driver.DRIVER
    assert isinstance(engine.dialect, sqlite_driver.Dialect)


async def test_a_statement_is_one_round_trip(
    engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query with rows costs one trip to the worker thread (the stock adapter: more)."""
    stock = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    try:
        for each, expected in ((engine, 1), (stock, None)):
            async with each.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))  # connection set up, warm
                calls = count_round_trips(monkeypatch)
                rows = (await conn.execute(sa.text("SELECT 2, 'two'"))).all()
                monkeypatch.undo()
            assert rows == [(2, "two")]
            if expected is not None:
                assert len(calls) == expected
            else:
                assert len(calls) >= 3  # open cursor, execute, fetch (close)
    finally:
        await stock.dispose()


async def test_rows_counts_ids_and_errors_are_the_drivers(engine: AsyncEngine) -> None:
    """Inserted ids, row counts, RETURNING, executemany, and a constraint error that rolls
    back its transaction and leaves the connection usable."""
    async with engine.begin() as conn:
        first = await conn.execute(sa.text("INSERT INTO t (name) VALUES ('a')"))
        assert first.lastrowid == 1 and first.rowcount == 1
        many = await conn.execute(
            sa.text("INSERT INTO t (name) VALUES (:name)"), [{"name": "b"}, {"name": "c"}]
        )
        assert many.rowcount == 2
        returned = await conn.execute(
            sa.text("UPDATE t SET name = name || '!' WHERE id > 1 RETURNING id, name")
        )
        assert sorted(returned.all()) == [(2, "b!"), (3, "c!")]
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO t (name) VALUES ('z')"))
            await conn.execute(sa.text("INSERT INTO t (name) VALUES ('a')"))
    async with engine.connect() as conn:
        names = (await conn.execute(sa.text("SELECT name FROM t ORDER BY id"))).scalars().all()
    assert names == ["a", "b!", "c!"]  # the failed transaction left nothing
