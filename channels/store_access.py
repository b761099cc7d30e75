"""How the store's operations reach the database: each one is a single call.

An operation is a plain function over a synchronous SQLAlchemy ``Connection`` that runs one
transaction's statements. :class:`ThreadAccess` (SQLite) runs it whole on a worker thread:
one hand-off from the event loop and one back, whatever the number of statements, so the
SQL work and SQLAlchemy's own (compiling, binding, reading rows) stay off the event loop,
and a write transaction never waits for the loop while it holds SQLite's one write lock.
Under the widget load that took the store from 5.8 ms of CPU per answered message, mostly
on the event loop, to about 1 ms (BENCHMARKS.md, issue 5). :class:`AsyncAccess`
(PostgreSQL, asyncpg) runs the same function through ``AsyncConnection.run_sync``: the
driver is asynchronous, and each statement is awaited as before.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, Protocol, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")
Op = Callable[[Connection], T]

WRITE_OPTION: Final = "frontdesk_write"
"""Execution option marking write transactions (``BEGIN IMMEDIATE`` on SQLite)."""

SQLITE_READERS: Final = 2
"""Reader threads: WAL lets them read while the writer writes, and SQLite releases the GIL
while it works, so two keep both cores of a small machine busy."""


class Access(Protocol):
    async def read(self, op: Op[T]) -> T:
        """Run ``op`` in a read transaction (a consistent snapshot of the database)."""

    async def write(self, op: Op[T]) -> T:
        """Run ``op`` in a write transaction, committed if it returns, rolled back if it
        raises (the exception reaches the caller)."""

    async def close(self) -> None: ...


class AsyncAccess:
    """Operations on an async engine's connections (PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{WRITE_OPTION: True})

    async def read(self, op: Op[T]) -> T:
        async with self._engine.connect() as conn:
            return await conn.run_sync(op)

    async def write(self, op: Op[T]) -> T:
        async with self._writer.begin() as conn:
            return await conn.run_sync(op)

    async def close(self) -> None:
        return None  # the store disposes of the engine


class ThreadAccess:
    """Operations on a synchronous engine, on threads of their own (SQLite).

    Writes go to one thread, which is SQLite's rule anyway (one writer at a time): they queue
    there in the order they were asked for, with no lock to poll. Reads go to a small pool.
    An operation whose caller is cancelled still runs to its end (a committed write stays
    committed, like a request that reached a server).
    """

    def __init__(self, engine: Engine, readers: int = SQLITE_READERS) -> None:
        self.engine = engine
        self._writer_engine = engine.execution_options(**{WRITE_OPTION: True})
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="frontdesk-store-write")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="frontdesk-store-read")

    async def read(self, op: Op[T]) -> T:
        return await _on(self._readers, functools.partial(_read, self.engine, op))

    async def write(self, op: Op[T]) -> T:
        return await _on(self._writer, functools.partial(_write, self._writer_engine, op))

    async def close(self) -> None:
        for pool in (self._writer, self._readers):
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)
        self.engine.dispose()


async def _on(pool: ThreadPoolExecutor, call: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, call)


def _read(engine: Engine, op: Op[T]) -> T:
    with engine.connect() as conn:  # its transaction ends (rolled back) with the block
        return op(conn)


def _write(engine: Engine, op: Op[T]) -> T:
    with engine.begin() as conn:
        return op(conn)
