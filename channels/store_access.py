"""How the store's operations reach the database: each one is a single call.

An operation is a plain function over a synchronous SQLAlchemy ``Connection`` that runs one
transaction's statements. :class:`ThreadAccess` runs it whole on a worker thread (SQLite
through ``sqlite3``, PostgreSQL through psycopg): one hand-off from the event loop and one
back, whatever the number of statements, so the SQL work and SQLAlchemy's own (compiling,
binding, reading rows) stay off the event loop, and a write transaction never waits for
the loop while it holds its locks. That took the store's work for one answered message
(two appends and a read) on SQLite from 5.8 ms of CPU, mostly on the event loop, to 1.45
ms, and with writes grouped under load (:class:`GroupCommitWriter`) an append costs about
0.3 ms (BENCHMARKS.md, issue 5). Each thread keeps its own connection
(:class:`OwnConnection`), the per-message statements skip SQLAlchemy's execution path
(``channels/prepared.py``), and an operation's result comes back with one
``call_soon_threadsafe`` (:class:`Reply`): about 0.6x that again.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

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
        self._reads: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._closed = False
        self._readers = [
            threading.Thread(target=self._read, name=f"frontdesk-store-read_{i}", daemon=True)
            for i in range(readers)
        ]
        for thread in self._readers:
            thread.start()

    async def read(self, op: Op[T]) -> T:
        if self._closed:
            raise RuntimeError("the store is closed: no more reads")
        reply: Reply[T] = Reply()
        self._reads.put(_Job(op, reply))
        return await reply.future

    async def write(self, op: Op[T]) -> T:
        if self._closed:
            raise RuntimeError("the store is closed: no more writes")
        reply: Reply[T] = Reply()
        self._writer.submit(op, reply)
        return await reply.future

    async def close(self) -> None:
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._writer.close)
        for _ in self._readers:
            self._reads.put(None)
        for thread in self._readers:
            await loop.run_in_executor(None, thread.join)
        self.engine.dispose()

    def _read(self) -> None:
        own = OwnConnection(self.engine)
        try:
            while (job := self._reads.get()) is not None:
                if job.reply.cancelled():
                    continue
                try:
                    value = own.run(job.op, commit=False)
                except BaseException as exc:  # the caller gets it (the thread goes on)
                    job.reply.fail(exc)
                else:
                    job.reply.succeed(value)
        finally:
            own.close()


RECHECK_AFTER_S: Final = 1.0
"""A thread's connection idle this long goes back to the pool before its next use, so the
pool's pre-ping checks it (a PostgreSQL restarted while the server was quiet)."""


class StaleConnection(Exception):
    """A kept connection was dead when an operation used it; nothing was committed."""


class OwnConnection:
    """A worker thread's connection, kept from one operation to the next while they keep
    coming: a pool checkout and check-in per operation cost the store's threads more than
    the statements did. After :data:`RECHECK_AFTER_S` idle, and after a database error,
    the next operation takes a connection from the pool again (and its pre-ping); an
    operation that finds its kept connection dead runs again on a new one (:meth:`run`)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None
        self._used_at = 0.0

    def run(self, op: Op[T], *, commit: bool) -> T:
        """``op`` in one :meth:`transaction`; once more on a new connection if the kept one
        turned out dead before anything was committed (a restarted PostgreSQL)."""
        try:
            with self.transaction(commit=commit) as conn:
                return op(conn)
        except StaleConnection:
            with self.transaction(commit=commit) as conn:
                return op(conn)

    def _connection(self) -> tuple[Connection, bool]:
        now = time.monotonic()
        if self._conn is not None and now - self._used_at > RECHECK_AFTER_S:
            self.close()
        kept = self._conn is not None
        if self._conn is None:
            self._conn = self._engine.connect()
        self._used_at = now
        return self._conn, kept

    @contextlib.contextmanager
    def transaction(self, *, commit: bool) -> Iterator[Connection]:
        """One transaction: committed at the end with ``commit``, else rolled back (a
        read); rolled back if the block raises. The connection is kept after the
        operation's own errors (an unknown conversation), dropped after the database's;
        :class:`StaleConnection` when a kept connection was found dead by the block."""
        conn, kept = self._connection()
        try:
            trans = conn.begin()
        except BaseException:
            self.close()
            raise
        try:
            yield conn
        except BaseException as exc:
            keep = isinstance(exc, Exception) and not isinstance(exc, SQLAlchemyError)
            try:
                trans.rollback()
            except Exception:
                keep = False
            if not keep:
                self.close()
            if kept and isinstance(exc, DBAPIError) and exc.connection_invalidated:
                raise StaleConnection(str(exc.orig)) from exc
            raise
        try:
            if commit:
                trans.commit()
            else:
                trans.rollback()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to give back
                conn.close()


class Reply(Generic[T]):
    """The event loop's future of an operation, settled from the thread that ran it.

    Lighter than ``run_in_executor`` or ``wrap_future`` (which pair a
    ``concurrent.futures.Future``, with its lock and condition, to an asyncio one): one
    asyncio future and one ``call_soon_threadsafe`` per operation, which is paid three
    times a message on the event loop.
    """

    __slots__ = ("_loop", "future")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.future: asyncio.Future[T] = self._loop.create_future()

    def cancelled(self) -> bool:
        """The caller gave up (read from the worker thread: a late cancel only means the
        result is dropped)."""
        return self.future.cancelled()

    def succeed(self, value: T) -> None:
        self._settle(value, None)

    def fail(self, exc: BaseException) -> None:
        self._settle(None, exc)

    def _settle(self, value: T | None, exc: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(_settle, self.future, value, exc)


def _settle(future: asyncio.Future[Any], value: object, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is None:
        future.set_result(value)
    else:
        future.set_exception(exc)


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
        self._own = OwnConnection(engine)
        self._queue: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, op: Op[T], reply: Reply[T]) -> None:
        if self._closed:
            raise RuntimeError("the store is closed: no more writes")
        self._queue.put(_Job(op, reply))

    def close(self) -> None:
        """Run the writes already queued, then stop the thread."""
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._own.close()

    def _loop(self) -> None:
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
            self._commit([job for job in jobs if not job.reply.cancelled()])
            if stop:
                return

    def _commit(self, jobs: list[_Job[Any]]) -> None:
        if len(jobs) > 1:
            try:
                with self._own.transaction(commit=True) as conn:
                    values = [job.op(conn) for job in jobs]
            except BaseException:  # one failed: each runs again alone, below
                pass
            else:
                for job, value in zip(jobs, values, strict=True):
                    job.reply.succeed(value)
                return
        for job in jobs:
            try:
                value = self._own.run(job.op, commit=True)
            except BaseException as exc:  # the caller gets it (the thread goes on)
                job.reply.fail(exc)
            else:
                job.reply.succeed(value)


@dataclass(frozen=True, slots=True)
class _Job(Generic[T]):
    op: Op[T]
    reply: Reply[T]
