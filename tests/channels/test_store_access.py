"""How the store's operations reach SQLite: whole, on worker threads, one writer."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from bot.types import Role
from channels import store_access
from channels.store import Store, make_sync_engine
from channels.store_access import OwnConnection, ThreadAccess

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
async def access(tmp_path: Path) -> AsyncIterator[ThreadAccess]:
    access = ThreadAccess(make_sync_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"))
    await access.write(
        lambda conn: conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, n INT)"))
    )
    yield access
    await access.close()


def _run(statement: sa.Executable, conn: Connection) -> None:
    conn.execute(statement)


def _insert(n: int) -> sa.TextClause:
    return sa.text("INSERT INTO t (n) VALUES (:n)").bindparams(n=n)


async def test_writes_run_on_one_thread_in_the_order_asked(access: ThreadAccess) -> None:
    """Concurrent writes all run on the single writer thread, never the event loop's,
    one after another in the order they were asked for."""
    threads: list[str] = []

    def insert(n: int, conn: Connection) -> None:
        threads.append(threading.current_thread().name)
        conn.execute(_insert(n))

    await asyncio.gather(*(access.write(functools.partial(insert, n)) for n in range(20)))
    rows = await access.read(lambda conn: conn.execute(sa.text("SELECT n FROM t ORDER BY id")))
    assert [n for (n,) in rows] == list(range(20))
    assert len(set(threads)) == 1 and threads[0].startswith("frontdesk-store-write")
    assert threads[0] != threading.current_thread().name


async def test_a_failing_write_stores_none_of_its_statements(access: ThreadAccess) -> None:
    """An operation that raises is rolled back whole and its error reaches the caller;
    writes before and after it are kept."""
    await access.write(lambda conn: conn.execute(_insert(1)))

    def half_then_fail(conn: Connection) -> None:
        conn.execute(_insert(2))
        conn.execute(sa.text("INSERT INTO t (id, n) VALUES (1, 3)"))  # duplicate key

    with pytest.raises(IntegrityError):
        await access.write(half_then_fail)
    await access.write(lambda conn: conn.execute(_insert(4)))
    rows = await access.read(lambda conn: conn.execute(sa.text("SELECT n FROM t ORDER BY id")))
    assert [n for (n,) in rows] == [1, 4]


async def _queued_behind_a_busy_writer(
    access: ThreadAccess, statements: list[sa.Executable]
) -> list[asyncio.Future[None]]:
    """Hold the writer thread with one write (n=0), queue ``statements`` behind it, let it
    go: the futures of the held write and of each queued one."""
    busy, release = threading.Event(), threading.Event()

    def hold_the_writer(conn: Connection) -> None:
        busy.set()
        assert release.wait(10)
        conn.execute(_insert(0))

    futures: list[asyncio.Future[None]] = [asyncio.ensure_future(access.write(hold_the_writer))]
    assert await asyncio.to_thread(busy.wait, 10)
    futures += [
        asyncio.ensure_future(access.write(functools.partial(_run, statement)))
        for statement in statements
    ]
    await asyncio.sleep(0.05)  # all are in the writer's queue
    assert not any(future.done() for future in futures)
    release.set()
    return futures


async def test_writes_that_wait_together_share_one_commit(access: ThreadAccess) -> None:
    """Writes queued while the writer is busy are committed together, and each caller hears
    of its write only once it is committed (another connection sees it)."""
    commits: list[int] = []
    sa.event.listen(access.engine, "commit", lambda _conn: commits.append(1))
    held, *queued = await _queued_behind_a_busy_writer(access, [_insert(n) for n in (1, 2, 3)])
    await held
    await queued[0]
    seen = await access.read(lambda conn: conn.execute(sa.text("SELECT n FROM t")).all())
    assert {n for (n,) in seen} == {0, 1, 2, 3}
    await asyncio.gather(*queued)
    assert len(commits) == 2  # the held write, then the other three together


async def test_a_failing_write_in_a_group_fails_alone(access: ThreadAccess) -> None:
    """When one write of a group raises, only its caller gets the error: the others are
    committed, in the order asked for, and nothing of the failing one is stored."""
    duplicate = sa.text("INSERT INTO t (id, n) VALUES (1, 9)")  # id 1 is the held write's
    held, first, failing, last = await _queued_behind_a_busy_writer(
        access, [_insert(1), duplicate, _insert(3)]
    )
    await asyncio.gather(held, first, last)
    with pytest.raises(IntegrityError):
        await failing
    rows = await access.read(lambda conn: conn.execute(sa.text("SELECT n FROM t ORDER BY id")))
    assert [n for (n,) in rows] == [0, 1, 3]


async def test_a_read_sees_one_snapshot_while_a_write_commits(access: ThreadAccess) -> None:
    """A read operation's statements see the same database even when a write commits
    between them (WAL: readers do not wait for the writer, nor see half of it)."""
    await access.write(lambda conn: conn.execute(_insert(1)))
    first_read, written = threading.Event(), threading.Event()

    def read_twice(conn: Connection) -> tuple[int, int]:
        before = conn.execute(sa.text("SELECT count(*) FROM t")).scalar_one()
        first_read.set()
        assert written.wait(10)
        return before, conn.execute(sa.text("SELECT count(*) FROM t")).scalar_one()

    def write_between(conn: Connection) -> None:
        assert first_read.wait(10)
        conn.execute(_insert(2))

    reading = asyncio.ensure_future(access.read(read_twice))
    await access.write(write_between)
    written.set()
    assert await reading == (1, 1)
    count = await access.read(lambda conn: conn.execute(sa.text("SELECT count(*) FROM t")).scalar())
    assert count == 2


async def test_the_store_runs_no_sql_on_the_event_loop(tmp_path: Path) -> None:
    """Storing and answering a message runs every statement on the store's threads."""
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    threads: set[str] = set()

    def seen(*_: object) -> None:
        threads.add(threading.current_thread().name)

    sa.event.listen(store.sync_engine, "before_cursor_execute", seen)
    try:
        record, _ = await store.create_conversation("web", NOW)
        event, _ = await store.append_customer_message(record.id, "c1", "hi", NOW)
        await store.conversation_with_turns(record.id, 6, before_seq=event.seq)
        await store.append_event(
            record.id, kind="message", role=Role.BOT, text="hello", payload={}, now=NOW
        )
    finally:
        await store.close()
    assert threads and all(name.startswith("frontdesk-store-") for name in threads)


async def test_close_stops_the_threads(tmp_path: Path) -> None:
    """After close() the store's threads are gone and an operation is refused."""
    access = ThreadAccess(make_sync_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"))
    used: list[threading.Thread] = []

    def note_thread(conn: Connection) -> None:
        used.append(threading.current_thread())

    await asyncio.gather(access.read(note_thread), access.write(note_thread))
    await access.close()
    assert len(used) == 2 and not any(thread.is_alive() for thread in used)
    with pytest.raises(RuntimeError):
        await access.read(lambda conn: conn.execute(sa.text("SELECT 1")).all())
    with pytest.raises(RuntimeError):
        await access.write(lambda conn: conn.execute(sa.text("SELECT 1")).all())


def test_a_thread_keeps_its_connection_until_idle_or_a_database_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store thread reuses its connection from one operation to the next, also after an
    operation's own error; after a database error, or once idle for RECHECK_AFTER_S, it
    takes one from the pool again (where PostgreSQL's pre-ping checks it)."""
    engine = make_sync_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    checkouts: list[int] = []
    sa.event.listen(engine, "checkout", lambda *_: checkouts.append(1))
    own = OwnConnection(engine)

    def run(statement: str) -> None:
        with own.transaction(commit=True) as conn:
            conn.execute(sa.text(statement))

    run("CREATE TABLE t (n INT)")
    run("INSERT INTO t VALUES (1)")
    with pytest.raises(ValueError), own.transaction(commit=True) as conn:
        conn.execute(sa.text("INSERT INTO t VALUES (2)"))
        raise ValueError("the operation's own error")
    run("INSERT INTO t VALUES (3)")
    assert len(checkouts) == 1
    with pytest.raises(OperationalError):
        run("INSERT INTO missing VALUES (4)")
    run("INSERT INTO t VALUES (5)")
    assert len(checkouts) == 2
    monkeypatch.setattr(store_access, "RECHECK_AFTER_S", 0.0)
    time.sleep(0.01)
    with own.transaction(commit=False) as conn:
        assert [n for (n,) in conn.execute(sa.text("SELECT n FROM t ORDER BY n"))] == [1, 3, 5]
    assert len(checkouts) == 3
    own.close()
    engine.dispose()


def test_sync_engines_are_for_sqlite_and_postgres() -> None:
    """make_sync_engine gives PostgreSQL URLs psycopg, and names what it expected when
    given another database's URL."""
    engine = make_sync_engine("postgresql+asyncpg://x@localhost/db")
    assert engine.dialect.driver == "psycopg"
    engine.dispose()
    with pytest.raises(ValueError, match="runs on SQLite or PostgreSQL, got mysql"):
        make_sync_engine("mysql+aiomysql://x@localhost/db")
