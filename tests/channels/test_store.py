"""The conversation store on SQLite (always) and PostgreSQL (when reachable)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from bot.errors import IllegalTransition
from bot.types import ConversationStatus as S
from bot.types import Role
from channels.store import (
    ClosedConversation,
    Store,
    StoredEvent,
    UnknownConversation,
    make_engine,
    metadata,
    migrations_config,
    upgrade,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
POSTGRES = os.environ.get(
    "FRONTDESK_TEST_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
HEAD = "0003"


@pytest.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str | Exception]:
    """A private database on the PostgreSQL test server for this run, dropped at its end,
    or why the server could not be reached.

    Another run against the same server at the same time (a colleague's, CI's) then cannot
    drop the tables under this one. Without the right to create databases, the configured
    database itself is used.
    """
    admin = create_async_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    try:
        async with asyncio.timeout(10), admin.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        await admin.dispose()
        yield exc
        return
    name = f"frontdesk_test_{uuid.uuid4().hex[:12]}"
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except SQLAlchemyError:
        await admin.dispose()
        yield POSTGRES
        return
    try:
        yield make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def _drop_tables(url: str) -> None:
    """Drop the store's tables and Alembic's, so that a test starts from an empty database."""
    tables = ", ".join(t.name for t in reversed(metadata.sorted_tables))
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"DROP TABLE IF EXISTS {tables}, alembic_version CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str | Exception) -> str:
    """An empty database; the SQLite file's folder does not exist yet."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'home' / 'frontdesk.db'}"
    if isinstance(postgres_url, Exception):
        if os.environ.get("FRONTDESK_REQUIRE_SERVICES"):  # CI with a database: fail instead
            raise postgres_url
        pytest.skip(
            f"PostgreSQL not reachable at {POSTGRES} "
            f"({type(postgres_url).__name__}: {postgres_url}); "
            "set FRONTDESK_TEST_POSTGRES to point the tests at a server"
        )
    await _drop_tables(postgres_url)
    return postgres_url


@pytest.fixture
async def store(url: str) -> AsyncIterator[Store]:
    opened = await Store.open(url)
    yield opened
    await opened.close()


async def _message(store: Store, conversation_id: str, text: str, role: Role = Role.BOT) -> int:
    event = await store.append_event(
        conversation_id, kind="message", role=role, text=text, payload={}, now=NOW
    )
    return event.seq


async def _customer(store: Store, conversation_id: str, client_id: str) -> int:
    event, _ = await store.append_customer_message(conversation_id, client_id, "hi", NOW)
    return event.seq


async def _reach(store: Store, conversation_id: str, status: S) -> None:
    """Move a new conversation to ``status`` by legal steps."""
    path = {S.BOT: [], S.WAITING: [S.WAITING], S.AGENT: [S.WAITING, S.AGENT], S.CLOSED: [S.CLOSED]}
    for step in path[status]:
        await store.set_status(conversation_id, step, reason=None, now=NOW)


# --- migrations --------------------------------------------------------------------------


async def test_open_migrates_an_empty_database_to_head(url: str) -> None:
    """Store.open creates both tables with their columns and constraints at the head revision."""
    store = await Store.open(url)

    def inspect(conn: sa.Connection) -> dict[str, set[str]]:
        inspector = sa.inspect(conn)
        found = {
            t: {c["name"] for c in inspector.get_columns(t)} for t in ("conversations", "events")
        }
        found["tables"] = set(inspector.get_table_names())
        found["constraints"] = {
            str(c["name"])
            for t in ("conversations", "events")
            for c in [*inspector.get_unique_constraints(t), *inspector.get_check_constraints(t)]
        }
        return found

    async with store.engine.connect() as conn:
        found = await conn.run_sync(inspect)
        version = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()
    await store.close()
    assert found["tables"] >= {"conversations", "events", "alembic_version"}
    assert found["conversations"] == {
        "id", "token_hash", "channel", "status", "created_at", "updated_at", "last_seq",
        "low_confidence_streak", "meta", "external_id",
    }  # fmt: skip
    assert found["events"] == {
        "id", "conversation_id", "seq", "kind", "role", "text", "client_id", "payload",
        "created_at",
    }  # fmt: skip
    assert found["constraints"] == {
        "uq_events_conversation_id_seq", "uq_events_conversation_id_client_id",
        "ck_conversations_status", "ck_events_kind", "ck_events_role",
    }  # fmt: skip
    assert version == HEAD


async def test_migrations_match_the_table_definitions(store: Store, url: str) -> None:
    """Alembic's autogenerate finds nothing to add: migrations and channels.store agree."""
    # command.check runs env.py without a handed-in connection (its asyncio.run path), as a
    # developer generating a revision would: in a thread, outside this test's event loop.
    await asyncio.to_thread(command.check, migrations_config(url))


async def test_migrations_downgrade_and_upgrade_again(store: Store, url: str) -> None:
    """Downgrading to nothing drops the tables, and upgrading afterwards rebuilds them."""
    await store.close()
    await asyncio.to_thread(command.downgrade, migrations_config(url), "base")
    reopened = await Store.open(url)
    record, _ = await reopened.create_conversation("web", NOW)
    assert await reopened.events_after(record.id, 0) == []
    await reopened.close()


async def test_open_twice_keeps_the_data(url: str) -> None:
    """Opening an already migrated database is a no-op that keeps what was stored."""
    first = await Store.open(url)
    record, token = await first.create_conversation("web", NOW)
    await first.close()
    second = await Store.open(url)
    assert await second.get_conversation(record.id) == record
    assert await second.check_token(record.id, token)
    await second.close()


async def test_replicas_opening_a_fresh_database_together(url: str) -> None:
    """Several processes starting at once against an empty database all come up."""
    stores = await asyncio.gather(*(Store.open(url) for _ in range(3)))
    assert all([await s.ping() for s in stores])
    for s in stores:
        await s.close()


def test_upgrade_for_the_cli(tmp_path: Path) -> None:
    """The synchronous upgrade() creates the folder and the schema outside any event loop."""
    path = tmp_path / "new" / "frontdesk.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    upgrade(f"sqlite+aiosqlite:///{path}")  # again: nothing to do
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert {"conversations", "events"} <= tables and version == (HEAD,)


async def test_upgrade_inside_an_event_loop_says_what_to_use(tmp_path: Path) -> None:
    """upgrade() from async code fails with a message pointing at Store.open."""
    with pytest.raises(RuntimeError, match=r"Store\.open"):
        upgrade(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")


async def test_sqlite_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    """Every SQLite connection runs in WAL mode with foreign keys enforced."""
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'f.db'}")
    async with store.engine.connect() as conn:
        journal = (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar()
        foreign_keys = (await conn.execute(sa.text("PRAGMA foreign_keys"))).scalar()
    await store.close()
    assert (journal, foreign_keys) == ("wal", 1)


async def test_a_message_and_its_answer_take_nine_statements(store: Store) -> None:
    """The per-message hot path stays lean: storing a customer message is one write
    transaction with no read before it; answering reads the conversation and its turns in
    one transaction and writes the reply in another."""
    record, _ = await store.create_conversation("web", NOW)
    await _message(store, record.id, "welcome")
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement.split()[0].upper())

    sa.event.listen(store.sync_engine, "before_cursor_execute", seen)
    try:
        event, _ = await store.append_customer_message(record.id, "c1", "hi", NOW)
        _, turns = await store.conversation_with_turns(record.id, 6, before_seq=event.seq)
        await _message(store, record.id, "hello!")
    finally:
        sa.event.remove(store.sync_engine, "before_cursor_execute", seen)
    assert [t.text for t in turns] == ["welcome"]
    begin = ["BEGIN"] if store.engine.dialect.name == "sqlite" else []  # PG: the driver's own
    write = [*begin, "UPDATE", "INSERT"]
    assert statements == [*write, *begin, "SELECT", "SELECT", *write]


async def test_prepared_statements_read_and_fail_as_execute_does(store: Store) -> None:
    """The per-message statements run on the DB-API cursor (channels/prepared.py) read the
    same values as SQLAlchemy's ``execute`` (aware UTC datetimes, JSON), start the
    connection's transaction as ``execute`` would, and raise SQLAlchemy's errors."""
    from channels.store import _CONVERSATION, _INSERT_EVENT, _TURNS_BEFORE

    record, _ = await store.create_conversation("web", NOW)
    await _customer(store, record.id, "c1")
    await store.append_event(
        record.id, kind="message", role=Role.BOT, text="hi", payload={"a": [1]}, now=NOW
    )
    params = {"cid": record.id, "limit": 5, "before": 3}
    with store.sync_engine.connect() as conn:
        fast = _CONVERSATION.mapping(conn, {"cid": record.id})
        assert conn.in_transaction()  # the next statement reads the same snapshot
        slow = conn.execute(_CONVERSATION.statement, {"cid": record.id}).first()
        turns = _TURNS_BEFORE.all(conn, params)
        assert turns == [tuple(r) for r in conn.execute(_TURNS_BEFORE.statement, params)]
        assert _CONVERSATION.mapping(conn, {"cid": "nobody"}) is None
    assert slow is not None and fast == dict(slow._mapping)
    assert fast["created_at"] == NOW and fast["created_at"].tzinfo is UTC
    assert [(role, text) for role, text, *_ in turns] == [("bot", "hi"), ("customer", "hi")]
    assert turns[0][2] == NOW and turns[0][2].tzinfo is UTC

    duplicate = {
        "conversation_id": record.id,
        "seq": 1,
        "kind": "message",
        "role": "bot",
        "text": "again",
        "client_id": None,
        "payload": {},
        "created_at": NOW,
    }
    with pytest.raises(IntegrityError), store.sync_engine.begin() as conn:
        _INSERT_EVENT.run(conn, duplicate)
    assert [e.text for e in await store.events_after(record.id, 0)] == ["hi", "hi"]


async def test_store_threads_reconnect_after_postgres_drops_them(store: Store) -> None:
    """The store's threads keep their connections; when PostgreSQL has dropped them (a
    restart), the next read and write on each thread find out on their first statement,
    nothing being committed, and run again on a new connection: no error reaches the
    caller."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has no server to drop connections")
    record, _ = await store.create_conversation("web", NOW)
    await asyncio.gather(*(store.get_conversation(record.id) for _ in range(4)))
    async with store.engine.connect() as conn:
        dropped = await conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        assert dropped.all()
    for _ in range(3):  # every reader thread
        found = await store.get_conversation(record.id)
        assert found is not None and found.id == record.id
    await _message(store, record.id, "after the restart")
    assert [e.text for e in await store.events_after(record.id, 0)] == ["after the restart"]


def test_store_and_migrations_need_no_torch_numpy_or_faiss(tmp_path: Path) -> None:
    """The store module imports and migrates with torch, numpy and faiss unavailable."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
    code = (
        "import sys\n"
        "for name in ('torch', 'numpy', 'faiss'):\n"
        "    sys.modules[name] = None\n"
        "from channels.store import upgrade\n"
        f"upgrade({db_url!r})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


async def test_ping(store: Store) -> None:
    """ping() is True for a live database and False (not an exception) for a dead one."""
    assert await store.ping()
    dead = Store(make_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none"))
    assert not await dead.ping(timeout_s=5)
    await dead.close()


# --- conversations and tokens ------------------------------------------------------------


async def test_new_conversation(store: Store) -> None:
    """A new conversation starts in status bot at sequence 0, and reads back equal."""
    record, _ = await store.create_conversation("web", NOW)
    assert (record.status, record.last_seq, record.low_confidence_streak) == (S.BOT, 0, 0)
    assert (record.channel, record.created_at, record.updated_at) == ("web", NOW, NOW)
    assert len(record.id) == 32
    assert await store.get_conversation(record.id) == record


async def test_tokens(store: Store) -> None:
    """Only the conversation's own token is accepted; unknown ids are refused."""
    record, token = await store.create_conversation("web", NOW)
    _, other_token = await store.create_conversation("web", NOW)
    assert token != other_token and len(token) >= 40
    assert await store.check_token(record.id, token)
    assert not await store.check_token(record.id, other_token)
    assert not await store.check_token(record.id, "")
    assert not await store.check_token("0" * 32, token)


async def test_only_the_token_hash_is_stored(store: Store) -> None:
    """The database holds the SHA-256 of the token, never the token itself."""
    record, token = await store.create_conversation("web", NOW)
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.text("SELECT * FROM conversations WHERE id = :id"), {"id": record.id}
            )
        ).one()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {str(value) for value in row}


async def test_low_confidence_streak(store: Store) -> None:
    """The low-confidence streak is stored and read back; it cannot go negative."""
    record, _ = await store.create_conversation("web", NOW)
    await store.set_low_confidence_streak(record.id, 2)
    assert (await store.get_conversation(record.id)).low_confidence_streak == 2  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=">= 0"):
        await store.set_low_confidence_streak(record.id, -1)


# --- events and sequence numbers ---------------------------------------------------------


async def test_sequence_numbers_span_every_event_kind(store: Store) -> None:
    """Customer messages, bot messages and status changes share one consecutive sequence."""
    record, _ = await store.create_conversation("web", NOW)
    first, created = await store.append_customer_message(record.id, "c1", "hi", NOW)
    bot = await store.append_event(
        record.id,
        kind="message",
        role=Role.BOT,
        text="hello",
        payload={"buttons": [{"title": "A", "payload": "a"}], "intent": "greet", "score": 0.9},
        now=NOW,
    )
    status = await store.set_status(record.id, S.WAITING, reason="requested", now=LATER)
    agent = await store.append_event(
        record.id, kind="message", role=Role.AGENT, text="I'm Ann", payload={}, now=LATER
    )
    assert created and (first.seq, bot.seq, status.seq, agent.seq) == (1, 2, 3, 4)
    events = await store.events_after(record.id, 0)
    assert events == [first, bot, status, agent]
    assert [(e.kind, e.role, e.client_id) for e in events] == [
        ("message", Role.CUSTOMER, "c1"),
        ("message", Role.BOT, None),
        ("status", None, None),
        ("message", Role.AGENT, None),
    ]
    assert events[1].payload["buttons"] == [{"title": "A", "payload": "a"}]
    assert events[2].payload == {"status": "waiting", "reason": "requested"}
    conversation = await store.get_conversation(record.id)
    assert conversation is not None
    assert (conversation.status, conversation.last_seq, conversation.updated_at) == (
        S.WAITING,
        4,
        LATER,
    )


async def test_duplicate_client_id_is_stored_once(store: Store) -> None:
    """A retried client_id returns the original event and stores nothing new."""
    record, _ = await store.create_conversation("web", NOW)
    first, created = await store.append_customer_message(record.id, "same", "hi", NOW)
    await _message(store, record.id, "hello")
    again, created_again = await store.append_customer_message(record.id, "same", "hi!!", LATER)
    assert created and not created_again
    assert again == first and again.seq == 1 and again.text == "hi"
    assert [e.seq for e in await store.events_after(record.id, 0)] == [1, 2]
    other, _ = await store.append_customer_message(record.id, "other", "hi", NOW)
    assert other.seq == 3  # the retry used up no sequence number


async def test_client_ids_are_per_conversation(store: Store) -> None:
    """Two conversations may use the same client_id independently."""
    a, _ = await store.create_conversation("web", NOW)
    b, _ = await store.create_conversation("web", NOW)
    _, created_a = await store.append_customer_message(a.id, "1", "hi", NOW)
    _, created_b = await store.append_customer_message(b.id, "1", "hi", NOW)
    assert created_a and created_b


async def test_racing_duplicates_store_one(store: Store) -> None:
    """Concurrent appends of one client_id store exactly one message and agree on it."""
    record, _ = await store.create_conversation("web", NOW)
    results = await asyncio.gather(
        *(store.append_customer_message(record.id, "race", "hi", NOW) for _ in range(5))
    )
    assert sum(created for _, created in results) == 1
    assert {event.seq for event, _ in results} == {1}
    assert len(await store.events_after(record.id, 0)) == 1


async def test_concurrent_appends_get_consecutive_seqs(store: Store) -> None:
    """20 concurrent appends to one conversation get seqs 1..20, no gaps, no repeats."""
    record, _ = await store.create_conversation("web", NOW)
    seqs = await asyncio.gather(*(_message(store, record.id, str(i)) for i in range(20)))
    assert sorted(seqs) == list(range(1, 21))
    stored = await store.events_after(record.id, 0)
    assert [e.seq for e in stored] == list(range(1, 21))
    assert {e.seq: e.text for e in stored} == {seq: str(i) for i, seq in enumerate(seqs)}


async def test_two_processes_append_to_one_conversation(store: Store, url: str) -> None:
    """Two stores on one database (two replicas) still number one conversation 1..20."""
    other = await Store.open(url)
    record, _ = await store.create_conversation("web", NOW)
    seqs = await asyncio.gather(
        *(_message(store if i % 2 else other, record.id, str(i)) for i in range(20)),
        *(_customer(store if i % 2 else other, record.id, f"c{i}") for i in range(6)),
    )
    await other.close()
    assert sorted(seqs) == list(range(1, 27))


async def test_racing_status_changes_only_one_wins(store: Store, url: str) -> None:
    """Of agents taking one waiting conversation at once, exactly one gets it."""
    other = await Store.open(url)
    record, _ = await store.create_conversation("web", NOW)
    await store.set_status(record.id, S.WAITING, reason=None, now=NOW)
    results = await asyncio.gather(
        *(
            (store if i % 2 else other).set_status(record.id, S.AGENT, reason=str(i), now=NOW)
            for i in range(6)
        ),
        return_exceptions=True,
    )
    await other.close()
    taken = [r for r in results if isinstance(r, StoredEvent)]
    assert len(taken) == 1, results
    assert all(isinstance(r, IllegalTransition) for r in results if r not in taken)
    assert [e.seq for e in await store.events_after(record.id, 0)] == [1, 2]


async def test_events_after(store: Store) -> None:
    """events_after returns exactly the events after a sequence number, in order, limited."""
    record, _ = await store.create_conversation("web", NOW)
    other, _ = await store.create_conversation("web", NOW)
    for i in range(6):
        await store.append_customer_message(record.id, f"c{i}", f"m{i}", NOW)
        await _message(store, other.id, "elsewhere")
    assert [e.text for e in await store.events_after(record.id, 4)] == ["m4", "m5"]
    assert [e.seq for e in await store.events_after(record.id, 0, limit=2)] == [1, 2]
    assert [e.seq for e in await store.events_after(record.id, 2, limit=2)] == [3, 4]
    assert await store.events_after(record.id, 6) == []
    assert await store.events_after(record.id, 0, limit=0) == []


async def test_payload_is_plain_json(store: Store) -> None:
    """Payloads read back equal to what append returned; non-JSON payloads are refused."""
    record, _ = await store.create_conversation("web", NOW)
    event = await store.append_event(
        record.id,
        kind="message",
        role=Role.BOT,
        text="a\x00b",
        payload={"buttons": ({"title": "é", "payload": "/x"},), "score": 0.5, "none": None},
        now=NOW,
    )
    assert event.payload["buttons"] == [{"title": "é", "payload": "/x"}]
    assert event.text == "a\ufffdb"  # PostgreSQL cannot store NUL: replaced on both backends
    assert await store.events_after(record.id, 0) == [event]
    with pytest.raises(ValueError, match="JSON"):
        await store.append_event(
            record.id, kind="message", role=Role.BOT, text="x", payload={"at": NOW}, now=NOW
        )
    assert (await store.get_conversation(record.id)).last_seq == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kind", "role", "text", "error"),
    [
        ("status", None, None, "set_status"),
        ("typing", Role.BOT, "x", "kind"),
        ("message", None, "x", "role"),
        ("message", Role.BOT, None, "text"),
    ],
)
async def test_append_event_refuses_malformed_events(
    store: Store, kind: str, role: Role | None, text: str | None, error: str
) -> None:
    """append_event stores well-formed messages only; status events go through set_status."""
    record, _ = await store.create_conversation("web", NOW)
    with pytest.raises(ValueError, match=error):
        await store.append_event(record.id, kind=kind, role=role, text=text, payload={}, now=NOW)
    assert await store.events_after(record.id, 0) == []


# --- status --------------------------------------------------------------------------------

LEGAL = {
    (S.BOT, S.WAITING),
    (S.BOT, S.CLOSED),
    (S.WAITING, S.AGENT),
    (S.WAITING, S.BOT),
    (S.WAITING, S.CLOSED),
    (S.AGENT, S.BOT),
    (S.AGENT, S.CLOSED),
}


@pytest.mark.parametrize(
    ("source", "target"),
    [(source, target) for source in S for target in S],
    ids=lambda status: status.value,
)
async def test_status_transitions(store: Store, source: S, target: S) -> None:
    """DESIGN §4 moves are stored with a status event; any other move raises, storing nothing."""
    record, _ = await store.create_conversation("web", NOW)
    await _reach(store, record.id, source)
    before = await store.get_conversation(record.id)
    assert before is not None and before.status is source
    if (source, target) in LEGAL:
        event = await store.set_status(record.id, target, reason="why", now=LATER)
        after = await store.get_conversation(record.id)
        assert after is not None
        assert (after.status, after.last_seq, after.updated_at) == (target, event.seq, LATER)
        assert event.seq == before.last_seq + 1
        assert dict(event.payload) == {"status": target.value, "reason": "why"}
    else:
        with pytest.raises(IllegalTransition, match=f"{source.value!r} to {target.value!r}"):
            await store.set_status(record.id, target, reason="why", now=LATER)
        assert await store.get_conversation(record.id) == before
        assert len(await store.events_after(record.id, 0)) == before.last_seq


# --- turns and time ------------------------------------------------------------------------


async def test_recent_turns_order_and_limit(store: Store) -> None:
    """recent_turns gives the last messages of every role oldest first, skipping status events."""
    record, _ = await store.create_conversation("web", NOW)
    await store.append_customer_message(record.id, "c0", "m0", NOW)
    await _message(store, record.id, "m1")
    await store.set_status(record.id, S.WAITING, reason=None, now=NOW)
    await store.set_status(record.id, S.AGENT, reason=None, now=NOW)
    await _message(store, record.id, "m2", Role.AGENT)
    await store.append_customer_message(record.id, "c3", "m3", LATER)
    await store.set_status(record.id, S.BOT, reason=None, now=NOW)
    turns = await store.recent_turns(record.id, 3)
    assert [(t.role, t.text) for t in turns] == [
        (Role.BOT, "m1"),
        (Role.AGENT, "m2"),
        (Role.CUSTOMER, "m3"),
    ]
    assert turns[-1].ts == LATER
    assert [t.text for t in await store.recent_turns(record.id, 100)] == ["m0", "m1", "m2", "m3"]
    assert await store.recent_turns(record.id, 0) == ()
    # before_seq: the history as it was before a given event (m3 is seq 6)
    before = await store.recent_turns(record.id, 100, before_seq=6)
    assert [t.text for t in before] == ["m0", "m1", "m2"]


async def test_conversation_with_turns_is_one_read_of_both(store: Store) -> None:
    """What answering a message reads: the conversation and its turns before a seq."""
    record, _ = await store.create_conversation("web", NOW)
    await store.append_customer_message(record.id, "c0", "m0", NOW)
    await _message(store, record.id, "m1")
    third, _ = await store.append_customer_message(record.id, "c2", "m2", LATER)
    await store.set_low_confidence_streak(record.id, 2)
    found, turns = await store.conversation_with_turns(record.id, 10, before_seq=third.seq)
    assert found == await store.get_conversation(record.id)
    assert found is not None and found.low_confidence_streak == 2 and found.last_seq == 3
    assert [(t.role, t.text) for t in turns] == [(Role.CUSTOMER, "m0"), (Role.BOT, "m1")]
    _, last_two = await store.conversation_with_turns(record.id, 2)
    assert [t.text for t in last_two] == ["m1", "m2"]
    assert await store.conversation_with_turns(uuid.uuid4().hex, 10) == (None, ())


async def test_a_bot_turn_keeps_the_intent_it_answered(store: Store) -> None:
    """The history the engine gets names the intent of each bot answer (a follow-up
    "and 2002?" repeats it); other turns and answers of no intent have none."""
    record, _ = await store.create_conversation("web", NOW)
    await store.append_customer_message(record.id, "c0", "where is 1043?", NOW)
    await store.append_event(
        record.id,
        kind="message",
        role=Role.BOT,
        text="It shipped.",
        payload={"decision": "action", "intent": "order_status"},
        now=NOW,
    )
    await store.append_event(
        record.id, kind="message", role=Role.BOT, text="Sorry?", payload={}, now=NOW
    )
    _, turns = await store.conversation_with_turns(record.id, 10)
    assert [t.intent for t in turns] == [None, "order_status", None]


async def test_a_closed_conversation_takes_no_customer_message(store: Store) -> None:
    """The store refuses it inside the append's transaction: nothing is stored, no
    sequence number is used, and a retry of a stored message is refused alike."""
    record, _ = await store.create_conversation("web", NOW)
    await store.append_customer_message(record.id, "c0", "before", NOW)
    closed = await store.set_status(record.id, S.CLOSED, reason=None, now=NOW)
    with pytest.raises(ClosedConversation, match="is closed"):
        await store.append_customer_message(record.id, "c1", "after", LATER)
    with pytest.raises(ClosedConversation):
        await store.append_customer_message(record.id, "c0", "before", LATER)
    after = await store.get_conversation(record.id)
    assert after is not None and after.last_seq == closed.seq
    assert [e.text for e in await store.events_after(record.id, 0)] == ["before", None]
    # bot and agent messages are not customer messages: only those are refused
    await _message(store, record.id, "goodbye")


async def test_datetimes_come_back_timezone_aware_utc(store: Store) -> None:
    """Times given in any zone are stored as UTC and read back timezone-aware on both backends."""
    paris = datetime(2026, 11, 22, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    record, _ = await store.create_conversation("web", paris)
    await store.append_customer_message(record.id, "c", "hi", paris)
    read = await store.get_conversation(record.id)
    (event,) = await store.events_after(record.id, 0)
    (turn,) = await store.recent_turns(record.id, 1)
    for value in (record.created_at, read.created_at, read.updated_at, event.created_at, turn.ts):  # type: ignore[union-attr]
        assert value == NOW and value.utcoffset() == timedelta(0) and value.tzinfo is UTC


async def test_naive_datetimes_are_refused(store: Store) -> None:
    """The store only takes timezone-aware times, so nothing is stored in a wrong zone."""
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.create_conversation("web", datetime(2026, 1, 1))
    record, _ = await store.create_conversation("web", NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.append_customer_message(record.id, "c", "hi", datetime(2026, 1, 1))


async def test_unknown_conversation(store: Store) -> None:
    """Every operation on a missing id raises UnknownConversation naming it; reads say None."""
    missing = "f" * 32
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.append_event(
            missing, kind="message", role=Role.BOT, text="x", payload={}, now=NOW
        ),
        lambda: store.append_customer_message(missing, "c", "x", NOW),
        lambda: store.set_status(missing, S.WAITING, reason=None, now=NOW),
        lambda: store.set_low_confidence_streak(missing, 1),
        lambda: store.events_after(missing, 0),
        lambda: store.recent_turns(missing, 5),
    ]
    for call in calls:
        with pytest.raises(UnknownConversation, match=missing):
            await call()
    assert await store.get_conversation(missing) is None
    assert not await store.check_token(missing, "token")
