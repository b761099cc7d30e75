"""How the store's operations reach the database: each one is a single call.

An operation is a plain function over a synchronous SQLAlchemy ``Connection`` that runs one
transaction's statements. :class:`ThreadAccess` runs it whole on a worker thread (SQLite
through ``sqlite3``, PostgreSQL through psycopg): one hand-off from the event loop and one
back, whatever the number of statements, so the SQL work and SQLAlchemy's own (compiling,
binding, reading rows) stay off the event loop, and a write transaction never waits for
the loop while it holds its locks. That took the store's work for one answered message
(two appends and a read) on SQLite from 5.8 ms of CPU, mostly on the event loop, to 1.45
ms, and with writes grouped under load (:class:`GroupCommitWriter`) an append costs about
0.3 ms (BENCHMARKS.md, issue 5).
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from sqlalchemy.engine import Connection, Engine

T = TypeVar("T")
Op = Callable[[Connection], T]

WRITE_OPTION: Final = "frontdesk_write"
"""Execution option marking write transactions (``BEGIN IMMEDIATE`` on SQLite)."""

READERS: Final = 2
"""Reader threads: they read while the writer writes (SQLite's WAL, PostgreSQL's MVCC),
and the drivers release the GIL while they wait, so two keep a small machine busy."""


class ThreadAccess:
    """Operations on a synchronous engine, on threads of their own.

    Writes go to one thread (SQLite's rule anyway: one writer at a time): they queue
    there in the order they were asked for, with no lock to poll, and the writes waiting
    together share one transaction and one commit (:class:`GroupCommitWriter`). Reads go to
    a small pool.
    """

    def __init__(self, engine: Engine, readers: int = READERS) -> None:
        self.engine = engine
        self._writer = GroupCommitWriter(engine.execution_options(**{WRITE_OPTION: True}))
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="frontdesk-store-read")

    async def read(self, op: Op[T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, functools.partial(_read, self.engine, op))

    async def write(self, op: Op[T]) -> T:
        return await asyncio.wrap_future(self._writer.submit(op))

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._writer.close)
        await loop.run_in_executor(None, self._readers.shutdown)
        self.engine.dispose()


def _read(engine: Engine, op: Op[T]) -> T:
    with engine.connect() as conn:  # its transaction ends (rolled back) with the block
        return op(conn)


GROUP_MAX: Final = 64
"""The most writes one commit takes."""


class GroupCommitWriter:
    """One thread that runs write operations, those waiting together in one transaction.

    A commit is the costly part of a small SQLite write (the WAL is synced to disk, and
    the thread waits for the GIL again afterwards), so under load the writes that queued
    while the last commit ran are run together in one transaction. If one of them raises
    (rare: a retried message's duplicate id, a closed conversation), that transaction is
    rolled back and each write runs again in a transaction of its own, so only the one that
    failed fails. Results are handed out only after the commit: a caller never hears
    "stored" of a write that is not. An operation must therefore do nothing but its SQL
    (it may run twice, the first time rolled back). A write whose caller is cancelled
    before it starts is dropped; one already running runs to its end.
    """

    def __init__(self, engine: Engine, name: str = "frontdesk-store-write") -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, op: Op[T]) -> Future[T]:
        if self._closed:
            raise RuntimeError("the store is closed: no more writes")
        job: _Job[T] = _Job(op, Future())
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        """Run the writes already queued, then stop the thread."""
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            stop = False
            while len(jobs) < GROUP_MAX:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
            self._commit([job for job in jobs if job.future.set_running_or_notify_cancel()])
            if stop:
                return

    def _commit(self, jobs: list[_Job[Any]]) -> None:
        if len(jobs) > 1:
            try:
                with self._engine.begin() as conn:
                    values = [job.op(conn) for job in jobs]
            except BaseException:  # one failed: each runs again alone, below
                pass
            else:
                for job, value in zip(jobs, values, strict=True):
                    job.future.set_result(value)
                return
        for job in jobs:
            try:
                with self._engine.begin() as conn:
                    value = job.op(conn)
            except BaseException as exc:  # the caller gets it (the thread goes on)
                job.future.set_exception(exc)
            else:
                job.future.set_result(value)


@dataclass(frozen=True, slots=True)
class _Job(Generic[T]):
    op: Op[T]
    future: Future[T]
