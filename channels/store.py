"""The conversation store: SQLAlchemy Core over SQLite or PostgreSQL (DESIGN §5).

It is the source of truth for conversations and their events (messages and status changes).
Every event gets the conversation's next sequence number, so a client that reconnects asks
for everything after the last number it saw (DESIGN §2). The caller passes ``now``: the store
never reads the clock, so tests are deterministic. The schema is created by the Alembic
migrations in ``channels/migrations``, run by :meth:`Store.open` and :func:`upgrade`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import re
import secrets
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.types import ConversationStatus, Role, Turn
from channels.prepared import Prepared
from channels.store_access import WRITE_OPTION, ThreadAccess

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS: Final = Path(__file__).parent / "migrations"

MESSAGE: Final = "message"
STATUS: Final = "status"
EVENT_KINDS: Final = (MESSAGE, STATUS)

CHANNEL_MAX_CHARS: Final = 32
ID_MAX_CHARS: Final = 32
"""A conversation's or an agent's id (uuid hex)."""
CLIENT_ID_MAX_CHARS: Final = 128
EXTERNAL_ID_MAX_CHARS: Final = 200

SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
"""How long a SQLite writer waits for another one to commit before "database is locked"."""

AnyRow: TypeAlias = "sa.Row[*tuple[Any, ...]]"
Rows: TypeAlias = Sequence[AnyRow]

_MIGRATION_LOCK: Final = 0x66726F6E74646B  # "frontdk": a PostgreSQL advisory lock key


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops tzinfo when storing)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # SQLite hands back the naive UTC time it was given; PostgreSQL an aware one.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# The migrations in channels/migrations/versions create this schema; keep them in step
# (tests/channels/test_store.py runs Alembic's autogenerate check against it).
conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(CHANNEL_MAX_CHARS), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("low_confidence_streak", sa.Integer, nullable=False, server_default="0"),
    # Free-form JSON about the conversation (e.g. a messaging channel's sender id); not
    # called "metadata", the name SQLAlchemy gives the schema itself.
    sa.Column("meta", sa.JSON, nullable=False),
    # The messaging provider's id for the customer (a Telegram chat, a WhatsApp number...):
    # one conversation per (channel, external_id); NULL for widget conversations.
    sa.Column("external_id", sa.String(EXTERNAL_ID_MAX_CHARS), nullable=True),
    sa.CheckConstraint("status IN ('bot', 'waiting', 'agent', 'closed')", name="status"),
    sa.Index(None, "status"),
    sa.Index(None, "channel", "external_id", unique=True),
)

events = sa.Table(
    "events",
    metadata,
    # BIGINT on PostgreSQL; SQLite only auto-increments a column declared INTEGER.
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column(
        "conversation_id",
        sa.String(32),
        sa.ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("role", sa.String(16), nullable=True),
    sa.Column("text", sa.Text, nullable=True),
    sa.Column("client_id", sa.String(CLIENT_ID_MAX_CHARS), nullable=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # Also the index events_after reads through.
    sa.UniqueConstraint("conversation_id", "seq"),
    # NULLs are distinct on both backends: only customer messages carry a client id.
    sa.UniqueConstraint("conversation_id", "client_id"),
    sa.CheckConstraint("kind IN ('message', 'status')", name="kind"),
    sa.CheckConstraint("role IS NULL OR role IN ('customer', 'bot', 'agent')", name="role"),
)

# --- the agent console (channels/console, migration 0003) -------------------------------

EMAIL_MAX_CHARS: Final = 254
NAME_MAX_CHARS: Final = 100
INTENT_MAX_CHARS: Final = 100

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("email", sa.String(EMAIL_MAX_CHARS), nullable=False),
    sa.Column("name", sa.String(NAME_MAX_CHARS), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint("role IN ('agent', 'admin')", name="role"),
    sa.Index(None, "email", unique=True),
)

agent_sessions = sa.Table(
    "agent_sessions",
    metadata,
    # A keyed hash of the session cookie: the cookie itself cannot be read back.
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column(
        "agent_id",
        sa.String(32),
        sa.ForeignKey("agents.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
)

# Who took a conversation (its latest taker); a table of its own so that conversations keep
# their columns. Written in the transaction that moves the conversation to `agent`.
assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column(
        "conversation_id",
        sa.String(32),
        sa.ForeignKey("conversations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("agent_id", sa.String(32), sa.ForeignKey("agents.id"), nullable=False),
    sa.Column("taken_at", UTCDateTime(), nullable=False),
    sa.Index(None, "agent_id"),
)

# Labelled data for the retrain loop: the intent the bot should have recognised in a
# customer turn (an existing intent or a new name), as an agent tagged it.
intent_tags = sa.Table(
    "intent_tags",
    metadata,
    sa.Column(
        "conversation_id",
        sa.String(32),
        sa.ForeignKey("conversations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("intent", sa.String(INTENT_MAX_CHARS), nullable=False),
    sa.Column("agent_id", sa.String(32), sa.ForeignKey("agents.id"), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

ratings = sa.Table(
    "ratings",
    metadata,
    sa.Column(
        "conversation_id",
        sa.String(32),
        sa.ForeignKey("conversations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("stars", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint("stars BETWEEN 1 AND 5", name="stars"),
)


class StoreError(Exception):
    """Root of the errors raised by the conversation store."""


class UnknownConversation(StoreError):
    """No conversation has the given id."""

    def __init__(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        super().__init__(
            f"no conversation with id {conversation_id!r} in the store; "
            "start a new conversation (or check the id the client sent)"
        )


class ClosedConversation(StoreError):
    """The conversation is closed: it takes no more customer messages."""

    def __init__(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        super().__init__(f"conversation {conversation_id} is closed and takes no more messages")


@dataclass(frozen=True)
class ConversationRecord:
    id: str
    channel: str
    status: ConversationStatus
    created_at: datetime
    updated_at: datetime
    last_seq: int
    """The sequence number of the conversation's newest event (0 before the first)."""
    low_confidence_streak: int


@dataclass(frozen=True)
class StoredEvent:
    conversation_id: str
    seq: int
    kind: str
    """``"message"`` or ``"status"``."""
    role: Role | None
    """Who wrote a message; ``None`` for status events."""
    text: str | None
    client_id: str | None
    """The client-chosen id of a customer message (deduplicates retries)."""
    payload: Mapping[str, object]
    """JSON data: buttons, intent, score, decision kind; ``status`` and ``reason``."""
    created_at: datetime


class AgentRole(StrEnum):
    AGENT = "agent"
    ADMIN = "admin"


class AgentExists(StoreError):
    """An agent with this email is already registered."""


@dataclass(frozen=True)
class AgentRecord:
    id: str
    email: str
    name: str
    role: AgentRole
    created_at: datetime


@dataclass(frozen=True)
class QueueEntry:
    """A conversation waiting for an agent (status ``waiting``)."""

    conversation_id: str
    channel: str
    waiting_since: datetime
    reason: str | None
    """The escalation reason of the status event that put it in the queue."""
    last_customer_text: str | None
    last_seq: int


@dataclass(frozen=True)
class IntentTag:
    conversation_id: str
    seq: int
    intent: str
    agent_id: str
    created_at: datetime


@dataclass(frozen=True)
class DeskNumbers:
    """Live numbers of the desk, over the status events since a moment."""

    queue_length: int
    taken: int
    """Conversations taken by an agent in the period."""
    average_wait_s: float | None
    """From ``waiting`` to ``agent``, over the conversations taken in the period."""
    average_handle_s: float | None
    """From ``agent`` to ``bot`` or ``closed``, over the hand-backs and closes."""
    escalations: Mapping[str, int]
    """Escalations in the period, by reason."""
    average_rating: float | None
    ratings: int


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored in place of a conversation token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def migrations_config(url: str) -> Config:
    """An Alembic config for the migrations in this package (there is no alembic.ini).

    Developers write a new revision with
    ``alembic.command.revision(migrations_config(url), "message", autogenerate=True)``.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # The option goes through ConfigParser interpolation: escape "%" (e.g. in a password).
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Migrate the database at ``url`` to the newest schema (synchronous, for the CLI).

    Inside a running event loop, ``await Store.open(url)`` does the same.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "channels.store.upgrade() is for synchronous callers and cannot run inside an "
            "event loop; use `await Store.open(url)`, which migrates too"
        )

    async def run() -> None:
        engine = make_engine(url)
        try:
            await _migrate_engine(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())


_MIGRATING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)
"""One migration at a time per event loop: Alembic's ``op`` is a process-wide proxy, so two
stores opening at once (tests, embedding) must not interleave their migrations; other
processes are kept out by the database (BEGIN IMMEDIATE, an advisory lock)."""


async def _migrate_engine(engine: AsyncEngine) -> None:
    """Run the migrations to head on ``engine`` without leaving the event loop."""
    lock = _MIGRATING.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock, engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        await conn.run_sync(_upgrade_on, engine.url.render_as_string(hide_password=False))


def _upgrade_on(connection: Connection, url: str) -> None:
    from alembic import command

    if connection.dialect.name == "postgresql":
        # Replicas starting together must not create the same tables at once; the lock
        # ends with the transaction. (On SQLite BEGIN IMMEDIATE already serialises them.)
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    config = migrations_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def make_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``; SQLite gets WAL, foreign keys and real transactions.

    The store runs its SQLite operations on a synchronous engine instead
    (:func:`make_sync_engine`); this one migrates the schema and serves ad hoc readers.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(parsed, pool_pre_ping=True)
    _make_parent(parsed.database)
    engine = create_async_engine(parsed)
    _configure_sqlite(engine.sync_engine)
    return engine


def make_sync_engine(url: str) -> Engine:
    """A synchronous engine for the same database as ``url``, for the store's worker
    threads: SQLite through the standard ``sqlite3`` module, configured like
    :func:`make_engine`'s (its connections may move between threads; each is used by one
    at a time), PostgreSQL through psycopg (the ``postgres`` extra)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return sa.create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            pool_pre_ping=True,
            pool_size=SYNC_POOL_SIZE,
        )
    if backend != "sqlite":
        raise ValueError(f"the store runs on SQLite or PostgreSQL, got {backend}: {url}")
    _make_parent(parsed.database)
    engine = sa.create_engine(
        parsed.set(drivername="sqlite+pysqlite"), connect_args={"check_same_thread": False}
    )
    _configure_sqlite(engine)
    return engine


SYNC_POOL_SIZE: Final = 4
"""Connections of a worker-thread engine: one writer and the readers, and room to spare."""


def _make_parent(database: str | None) -> None:
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: object) -> None:
        # Take transaction control away from the sqlite3 driver (its legacy mode runs
        # SELECTs outside the transaction, so a read-check-write is not atomic);
        # _on_begin emits BEGIN instead. See SQLAlchemy's "sqlite_transactions" docs.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that reads and then
        # writes fails at once with "database is locked" when another writer committed in
        # between (the busy timeout cannot help it), and its read would be stale anyway.
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        (_BEGIN_IMMEDIATE if write else _BEGIN).run(conn, {}, autobegin=False)


_BEGIN: Final = Prepared(sa.text("BEGIN"))
_BEGIN_IMMEDIATE: Final = Prepared(sa.text("BEGIN IMMEDIATE"))


class Store:
    """Conversations and their numbered events; safe to share between tasks.

    Every method is one operation of :mod:`channels.store_access`: a synchronous function
    over one transaction, run on the store's worker threads. ``engine`` (async) migrates
    the schema.
    """

    def __init__(self, engine: AsyncEngine, access: ThreadAccess | None = None) -> None:
        self.engine = engine
        if access is None:
            access = ThreadAccess(make_sync_engine(engine.url.render_as_string(False)))
        self._access = access

    @property
    def sync_engine(self) -> Engine:
        """The engine the operations' statements run on (for event listeners)."""
        return self._access.engine

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect to ``url`` (``sqlite+aiosqlite:///...`` or ``postgresql+asyncpg://...``)
        and migrate its schema to head."""
        engine = make_engine(url)
        try:
            await _migrate_engine(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def close(self) -> None:
        await self._access.close()
        await self.engine.dispose()

    async def ping(self, timeout_s: float = 5.0) -> bool:
        """True when the database answers ``SELECT 1`` within ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._all(sa.text("SELECT 1"))
        except Exception:  # a health check reports failure, whatever its cause
            return False
        return True

    async def _execute(self, statement: sa.Executable) -> int:
        """One statement in a write transaction of its own; the rows it matched."""
        return await self._access.write(lambda conn: conn.execute(statement).rowcount)

    async def _first(self, query: sa.Executable) -> AnyRow | None:
        return await self._access.read(lambda conn: conn.execute(query).first())

    async def _scalar(self, query: sa.Executable) -> Any:
        return await self._access.read(lambda conn: conn.execute(query).scalar())

    async def _all(self, query: sa.Executable) -> Rows:
        return await self._access.read(lambda conn: conn.execute(query).all())

    async def create_conversation(
        self, channel: str, now: datetime, *, external_id: str | None = None
    ) -> tuple[ConversationRecord, str]:
        """Start a conversation with status ``bot``; returns it and its secret token.

        Only the token's hash is stored: the token cannot be read back, only checked.
        """
        _check_id("channel", channel, CHANNEL_MAX_CHARS)
        now = _utc(now)
        token = secrets.token_urlsafe(32)
        record = ConversationRecord(
            id=uuid.uuid4().hex,
            channel=channel,
            status=ConversationStatus.BOT,
            created_at=now,
            updated_at=now,
            last_seq=0,
            low_confidence_streak=0,
        )
        values: dict[str, object] = {
            "id": record.id,
            "token_hash": hash_token(token),
            "channel": channel,
            "status": record.status.value,
            "created_at": now,
            "updated_at": now,
            "last_seq": 0,
            "low_confidence_streak": 0,
            "meta": {},
            "external_id": external_id,
        }
        await self._access.write(lambda conn: conn.execute(_INSERT_CONVERSATION, values))
        return record, token

    async def conversation_for(
        self, channel: str, external_id: str, now: datetime
    ) -> ConversationRecord:
        """The open conversation of ``external_id`` (a messaging channel's customer id) on
        ``channel``, created on first contact. A closed one is archived under a new key so
        that the customer's next message starts afresh. Safe against concurrent callers."""
        _check_id("channel", channel, CHANNEL_MAX_CHARS)
        _check_id("external_id", external_id, EXTERNAL_ID_MAX_CHARS)
        for _ in range(3):
            found = await self._by_external_id(channel, external_id)
            if found is not None and found.status is not ConversationStatus.CLOSED:
                return found
            if found is not None:  # closed: free the key for a new conversation
                archived = f"{found.id}:{external_id}"[:EXTERNAL_ID_MAX_CHARS]
                update = (
                    conversations.update()
                    .where(conversations.c.id == found.id)
                    .values(external_id=archived)
                )
                await self._execute(update)
            try:
                record, _token = await self.create_conversation(
                    channel, now, external_id=external_id
                )
            except IntegrityError:  # another process created it first: use theirs
                continue
            return record
        raise StoreError(f"could not open a conversation for {channel}:{external_id}")

    async def _by_external_id(self, channel: str, external_id: str) -> ConversationRecord | None:
        query = sa.select(conversations).where(
            conversations.c.channel == channel, conversations.c.external_id == external_id
        )
        row = await self._first(query)
        return None if row is None else _record(row._mapping)

    async def meta_of(self, conversation_id: str) -> dict[str, object]:
        """The conversation's free-form JSON (e.g. a messaging channel's reply address)."""
        query = sa.select(conversations.c.meta).where(conversations.c.id == conversation_id)
        meta = await self._scalar(query)
        if meta is None:
            raise UnknownConversation(conversation_id)
        return dict(meta)

    async def update_meta(self, conversation_id: str, values: Mapping[str, object]) -> None:
        """Set keys of the conversation's free-form JSON (others are kept)."""
        values = _json_object(values)

        def op(conn: Connection) -> None:
            meta = conn.execute(
                sa.select(conversations.c.meta).where(conversations.c.id == conversation_id)
            ).scalar()
            if meta is None:
                raise UnknownConversation(conversation_id)
            conn.execute(
                conversations.update()
                .where(conversations.c.id == conversation_id)
                .values(meta={**meta, **values})
            )

        await self._access.write(op)

    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        """The conversation, or None (unknown, or not an id at all)."""
        if not 0 < len(conversation_id) <= ID_MAX_CHARS or not clean_id(conversation_id):
            return None
        row = await self._access.read(
            lambda conn: _CONVERSATION.mapping(conn, {"cid": conversation_id})
        )
        return None if row is None else _record(row)

    async def check_token(self, conversation_id: str, token: str) -> bool:
        """True if ``token`` is the conversation's token; False for unknown ids."""
        query = sa.select(conversations.c.token_hash).where(conversations.c.id == conversation_id)
        stored = await self._scalar(query)
        if stored is None:
            return False
        return hmac.compare_digest(str(stored), hash_token(token))

    async def append_customer_message(
        self, conversation_id: str, client_id: str, text: str, now: datetime
    ) -> tuple[StoredEvent, bool]:
        """Store a customer message once per ``client_id``: returns (event, created).

        A retry with a ``client_id`` already stored stores nothing and returns the original
        event with ``created=False``, also when the two calls race. A closed conversation
        takes no messages (:class:`ClosedConversation`).
        """
        _check_id("client_id", client_id, CLIENT_ID_MAX_CHARS)
        append = functools.partial(
            _append,
            conversation_id=conversation_id,
            kind=MESSAGE,
            role=Role.CUSTOMER,
            text=text,
            client_id=client_id,
            payload={},
            now=_utc(now),
            refuse_closed=True,
        )
        try:
            created = await self._access.write(append)
        except IntegrityError:
            # The client_id is stored already (a retry, or a concurrent call that won):
            # our transaction, with its sequence number, was rolled back. Retries are rare,
            # so the common case pays no read before the insert.
            existing = await self._by_client_id(conversation_id, client_id)
            if existing is None:
                raise
            return existing, False
        return created, True

    async def append_event(
        self,
        conversation_id: str,
        *,
        kind: str,
        role: Role | None,
        text: str | None,
        payload: Mapping[str, object],
        now: datetime,
    ) -> StoredEvent:
        """Store a bot or agent message with the conversation's next sequence number.

        Status events are written by :meth:`set_status`, which also moves the conversation.
        """
        if kind != MESSAGE:
            hint = "; use set_status() to change the status" if kind == STATUS else ""
            raise ValueError(f"append_event stores {MESSAGE!r} events, got kind {kind!r}{hint}")
        append = functools.partial(
            _append,
            conversation_id=conversation_id,
            kind=kind,
            role=role,
            text=text,
            client_id=None,
            payload=payload,
            now=_utc(now),
        )
        return await self._access.write(append)

    async def set_status(
        self,
        conversation_id: str,
        status: ConversationStatus,
        *,
        reason: str | None,
        now: datetime,
    ) -> StoredEvent:
        """Move the conversation to ``status`` and record a ``status`` event.

        Raises :class:`bot.errors.IllegalTransition` (storing nothing) if the move is not
        legal from the current status, including a move to the status it already has; of
        two racing moves from the same status only one succeeds.
        """
        now = _utc(now)

        def op(conn: Connection) -> StoredEvent:
            current = conn.execute(
                sa.select(conversations.c.status)
                .where(conversations.c.id == conversation_id)
                .with_for_update()  # PostgreSQL; SQLite's BEGIN IMMEDIATE locks already
            ).scalar()
            if current is None:
                raise UnknownConversation(conversation_id)
            ConversationStatus(current).check_transition(status)
            return _append(
                conn,
                conversation_id=conversation_id,
                kind=STATUS,
                role=None,
                text=None,
                client_id=None,
                payload={"status": status.value, "reason": reason},
                now=now,
                status=status,
            )

        return await self._access.write(op)

    async def set_low_confidence_streak(self, conversation_id: str, value: int) -> None:
        if value < 0:
            raise ValueError(f"low_confidence_streak must be >= 0, got {value}")
        update = (
            conversations.update()
            .where(conversations.c.id == conversation_id)
            .values(low_confidence_streak=value)
        )
        if await self._execute(update) == 0:
            raise UnknownConversation(conversation_id)

    async def events_after(
        self, conversation_id: str, last_seq: int, limit: int = 1000
    ) -> list[StoredEvent]:
        """Up to ``limit`` events with a sequence number above ``last_seq``, in order."""
        _check_limit(limit)
        query = (
            sa.select(events)
            .where(events.c.conversation_id == conversation_id, events.c.seq > last_seq)
            .order_by(events.c.seq)
            .limit(limit)
        )

        def op(conn: Connection) -> Rows:
            rows = conn.execute(query).all()
            if not rows:
                _require(conn, conversation_id)
            return rows

        return [_event(row._mapping) for row in await self._access.read(op)]

    async def recent_turns(
        self, conversation_id: str, limit: int, before_seq: int | None = None
    ) -> tuple[Turn, ...]:
        """The last ``limit`` messages (customer, bot and agent) as turns, oldest first;
        only those with a sequence number below ``before_seq`` when it is given."""
        _check_limit(limit)

        def op(conn: Connection) -> TurnRows:
            rows = _turns_rows(conn, conversation_id, limit, before_seq)
            if not rows:
                _require(conn, conversation_id)
            return rows

        return _turns(await self._access.read(op))

    async def conversation_with_turns(
        self, conversation_id: str, limit: int, before_seq: int | None = None
    ) -> tuple[ConversationRecord | None, tuple[Turn, ...]]:
        """:meth:`get_conversation` and :meth:`recent_turns` in one read (what answering a
        message needs); ``(None, ())`` for an unknown id."""
        _check_limit(limit)

        def op(conn: Connection) -> tuple[ConversationRecord | None, tuple[Turn, ...]]:
            row = _CONVERSATION.mapping(conn, {"cid": conversation_id})
            if row is None:
                return None, ()
            rows = _turns_rows(conn, conversation_id, limit, before_seq)
            return _record(row), _turns(rows)

        return await self._access.read(op)

    async def _by_client_id(self, conversation_id: str, client_id: str) -> StoredEvent | None:
        query = sa.select(events).where(
            events.c.conversation_id == conversation_id, events.c.client_id == client_id
        )
        row = await self._first(query)
        return None if row is None else _event(row._mapping)

    # --- the agent console ---------------------------------------------------------------

    async def add_agent(
        self, email: str, name: str, password_hash: str, role: AgentRole, now: datetime
    ) -> AgentRecord:
        """Register an agent; raises :class:`AgentExists` if the email is taken."""
        email = normalize_email(email)
        _check_id("email", email, EMAIL_MAX_CHARS)
        if not _EMAIL.fullmatch(email):
            raise ValueError(f"email: expected an address like ann@shop.example, got {email!r}")
        _check_id("name", name, NAME_MAX_CHARS)
        record = AgentRecord(uuid.uuid4().hex, email, name, AgentRole(role), _utc(now))
        insert = agents.insert().values(
            id=record.id,
            email=email,
            name=name,
            password_hash=password_hash,
            role=record.role.value,
            created_at=record.created_at,
        )
        try:
            await self._execute(insert)
        except IntegrityError:
            raise AgentExists(
                f"an agent with email {email!r} exists already; pick another email"
            ) from None
        return record

    async def agent_login(self, email: str) -> tuple[AgentRecord, str] | None:
        """The agent with ``email`` and its password hash, or None."""
        query = sa.select(agents).where(agents.c.email == normalize_email(email))
        row = await self._first(query)
        return None if row is None else (_agent(row._mapping), str(row.password_hash))

    async def set_password_hash(self, agent_id: str, password_hash: str) -> None:
        """Store a new hash (a rehash with stronger parameters, a password change)."""
        update = agents.update().where(agents.c.id == agent_id).values(password_hash=password_hash)
        await self._execute(update)

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        query = sa.select(agents).where(agents.c.id == agent_id)
        row = await self._first(query)
        return None if row is None else _agent(row._mapping)

    async def create_session(
        self, token_hash: str, agent_id: str, now: datetime, expires_at: datetime
    ) -> None:
        """Store a console session (by its token's keyed hash); drops the agent's expired
        sessions on the way."""
        now = _utc(now)
        expired = agent_sessions.delete().where(
            agent_sessions.c.agent_id == agent_id, agent_sessions.c.expires_at <= now
        )
        insert = agent_sessions.insert().values(
            token_hash=token_hash, agent_id=agent_id, created_at=now, expires_at=_utc(expires_at)
        )

        def op(conn: Connection) -> None:
            conn.execute(expired)
            conn.execute(insert)

        await self._access.write(op)

    async def session_agent(self, token_hash: str, now: datetime) -> AgentRecord | None:
        """The agent of an unexpired session, or None."""
        query = (
            sa.select(agents)
            .join(agent_sessions, agent_sessions.c.agent_id == agents.c.id)
            .where(
                agent_sessions.c.token_hash == token_hash,
                agent_sessions.c.expires_at > _utc(now),
            )
        )
        row = await self._first(query)
        return None if row is None else _agent(row._mapping)

    async def delete_session(self, token_hash: str) -> None:
        delete = agent_sessions.delete().where(agent_sessions.c.token_hash == token_hash)
        await self._execute(delete)

    async def waiting_count(self) -> int:
        """How many conversations wait for an agent (status ``waiting``)."""
        query = (
            sa.select(sa.func.count())
            .select_from(conversations)
            .where(conversations.c.status == ConversationStatus.WAITING.value)
        )
        count = await self._scalar(query)
        return int(count or 0)

    async def waiting_queue(self) -> list[QueueEntry]:
        """Conversations waiting for an agent, longest waiting first."""
        status_events = events.alias("status_events")
        last_status = (
            sa.select(sa.func.max(status_events.c.seq))
            .where(
                status_events.c.conversation_id == conversations.c.id,
                status_events.c.kind == STATUS,
            )
            .correlate(conversations)
            .scalar_subquery()
        )
        said = events.alias("said")
        last_customer = (
            sa.select(said.c.text)
            .where(said.c.conversation_id == conversations.c.id, said.c.role == Role.CUSTOMER.value)
            .order_by(said.c.seq.desc())
            .limit(1)
            .correlate(conversations)
            .scalar_subquery()
        )
        query = (
            sa.select(
                conversations.c.id,
                conversations.c.channel,
                conversations.c.last_seq,
                events.c.created_at,
                events.c.payload,
                last_customer.label("last_customer_text"),
            )
            .select_from(conversations)
            .join(
                events,
                sa.and_(
                    events.c.conversation_id == conversations.c.id, events.c.seq == last_status
                ),
            )
            .where(conversations.c.status == ConversationStatus.WAITING.value)
            .order_by(events.c.created_at, conversations.c.id)
        )
        rows = await self._all(query)
        return [
            QueueEntry(
                conversation_id=r.id,
                channel=r.channel,
                waiting_since=r.created_at,
                reason=_reason(r.payload),
                last_customer_text=r.last_customer_text,
                last_seq=int(r.last_seq),
            )
            for r in rows
        ]

    async def take_conversation(
        self, conversation_id: str, agent_id: str, now: datetime
    ) -> StoredEvent | None:
        """Move a ``waiting`` conversation to ``agent``, assigned to ``agent_id``.

        One conditional ``UPDATE ... WHERE status = 'waiting'``: of agents taking the same
        conversation at once exactly one gets the status event; the others get None (as
        does anyone taking a conversation that is not waiting).
        """
        now = _utc(now)
        payload: dict[str, object] = {
            "status": ConversationStatus.AGENT.value,
            "reason": None,
            "agent_id": agent_id,
        }

        def op(conn: Connection) -> int | None:
            seq = conn.execute(
                conversations.update()
                .where(
                    conversations.c.id == conversation_id,
                    conversations.c.status == ConversationStatus.WAITING.value,
                )
                .values(
                    status=ConversationStatus.AGENT.value,
                    last_seq=conversations.c.last_seq + 1,
                    updated_at=now,
                )
                .returning(conversations.c.last_seq)
            ).scalar()
            if seq is None:
                _require(conn, conversation_id)
                return None
            _INSERT_EVENT.run(
                conn,
                {
                    "conversation_id": conversation_id,
                    "seq": seq,
                    "kind": STATUS,
                    "role": None,
                    "text": None,
                    "client_id": None,
                    "payload": payload,
                    "created_at": now,
                },
            )
            conn.execute(
                assignments.delete().where(assignments.c.conversation_id == conversation_id)
            )
            conn.execute(
                assignments.insert().values(
                    conversation_id=conversation_id, agent_id=agent_id, taken_at=now
                )
            )
            return int(seq)

        seq = await self._access.write(op)
        if seq is None:
            return None
        return StoredEvent(
            conversation_id, seq, STATUS, None, None, None, MappingProxyType(payload), now
        )

    async def assigned_agent(self, conversation_id: str) -> str | None:
        """The id of the agent who took the conversation last, or None."""
        query = sa.select(assignments.c.agent_id).where(
            assignments.c.conversation_id == conversation_id
        )
        found = await self._scalar(query)
        return None if found is None else str(found)

    async def agent_conversations(self, agent_id: str) -> list[ConversationRecord]:
        """Conversations with status ``agent`` that ``agent_id`` took, oldest first."""
        query = (
            sa.select(conversations)
            .join(assignments, assignments.c.conversation_id == conversations.c.id)
            .where(
                assignments.c.agent_id == agent_id,
                conversations.c.status == ConversationStatus.AGENT.value,
            )
            .order_by(assignments.c.taken_at)
        )
        rows = await self._all(query)
        return [_record(r._mapping) for r in rows]

    async def customer_message(self, conversation_id: str, seq: int) -> StoredEvent | None:
        """The customer message with this seq, or None (another kind, or none at all)."""
        query = sa.select(events).where(
            events.c.conversation_id == conversation_id,
            events.c.seq == seq,
            events.c.role == Role.CUSTOMER.value,
        )
        row = await self._first(query)
        return None if row is None else _event(row._mapping)

    async def last_customer_message(self, conversation_id: str) -> StoredEvent | None:
        query = (
            sa.select(events)
            .where(
                events.c.conversation_id == conversation_id,
                events.c.role == Role.CUSTOMER.value,
            )
            .order_by(events.c.seq.desc())
            .limit(1)
        )
        row = await self._first(query)
        return None if row is None else _event(row._mapping)

    async def unanswered_tails(
        self, since: datetime, before: datetime, limit: int = 1000
    ) -> list[StoredEvent]:
        """Conversations the bot handles whose last event is a customer message, last
        active in [``since``, ``before``): that message (up to ``limit``, oldest first).
        One indexed query: the conversation row names its last seq."""
        _check_limit(limit)
        query = (
            sa.select(events)
            .join(
                conversations,
                sa.and_(
                    events.c.conversation_id == conversations.c.id,
                    events.c.seq == conversations.c.last_seq,
                ),
            )
            .where(
                conversations.c.status == ConversationStatus.BOT.value,
                conversations.c.updated_at >= _utc(since),
                conversations.c.updated_at < _utc(before),
                events.c.role == Role.CUSTOMER.value,
            )
            .order_by(conversations.c.updated_at)
            .limit(limit)
        )
        return [_event(row._mapping) for row in await self._all(query)]

    async def recent_bot_messages(self, limit: int = 2000) -> list[StoredEvent]:
        """The bot's ``limit`` latest messages, newest first, across conversations."""
        _check_limit(limit)
        query = (
            sa.select(events)
            .where(events.c.role == Role.BOT.value, events.c.kind == "message")
            .order_by(events.c.id.desc())
            .limit(limit)
        )
        return [_event(row._mapping) for row in await self._all(query)]

    async def tag_intent(
        self, conversation_id: str, seq: int, intent: str, agent_id: str, now: datetime
    ) -> IntentTag:
        """Label the customer turn ``seq`` with the intent the bot should have recognised;
        tagging a turn again replaces its label."""
        _check_id("intent", intent, INTENT_MAX_CHARS)
        if await self.customer_message(conversation_id, seq) is None:
            raise ValueError(
                f"seq {seq} of conversation {conversation_id} is not a customer message; "
                "tag the customer turn the bot misunderstood"
            )
        tag = IntentTag(conversation_id, seq, intent, agent_id, _utc(now))

        def op(conn: Connection) -> None:
            conn.execute(
                intent_tags.delete().where(
                    intent_tags.c.conversation_id == conversation_id, intent_tags.c.seq == seq
                )
            )
            conn.execute(intent_tags.insert().values(**asdict(tag)))

        await self._access.write(op)
        return tag

    async def conversations_page(
        self, *, since: datetime | None = None, after_id: str = "", limit: int = 500
    ) -> list[ConversationRecord]:
        """Up to ``limit`` conversations updated or given an intent tag at or after ``since``
        (all: None), in id order from after ``after_id``: a page of a walk through the
        store."""
        _check_limit(limit)
        query = sa.select(conversations).where(conversations.c.id > after_id)
        if since is not None:
            at = _utc(since)
            tagged_since = (
                sa.select(intent_tags.c.conversation_id)
                .where(
                    intent_tags.c.conversation_id == conversations.c.id,
                    intent_tags.c.created_at >= at,
                )
                .exists()
            )
            query = query.where(sa.or_(conversations.c.updated_at >= at, tagged_since))
        rows = await self._all(query.order_by(conversations.c.id).limit(limit))
        return [_record(r._mapping) for r in rows]

    async def intent_tags_of(self, conversation_id: str) -> list[IntentTag]:
        query = (
            sa.select(intent_tags)
            .where(intent_tags.c.conversation_id == conversation_id)
            .order_by(intent_tags.c.seq)
        )
        rows = await self._all(query)
        return [IntentTag(**r._mapping) for r in rows]

    async def rate_conversation(self, conversation_id: str, stars: int, now: datetime) -> None:
        """The customer's rating (1-5); rating again replaces it."""
        if not 1 <= stars <= 5:
            raise ValueError(f"stars must be 1 to 5, got {stars}")

        def op(conn: Connection) -> None:
            _require(conn, conversation_id)
            conn.execute(ratings.delete().where(ratings.c.conversation_id == conversation_id))
            conn.execute(
                ratings.insert().values(
                    conversation_id=conversation_id, stars=stars, created_at=_utc(now)
                )
            )

        await self._access.write(op)

    async def rating_of(self, conversation_id: str) -> int | None:
        query = sa.select(ratings.c.stars).where(ratings.c.conversation_id == conversation_id)
        stars = await self._scalar(query)
        return None if stars is None else int(stars)

    async def desk_numbers(self, since: datetime) -> DeskNumbers:
        """Queue length now; waits, handle times, escalations and ratings since ``since``."""
        since = _utc(since)
        recent = (
            sa.select(events.c.conversation_id)
            .where(events.c.kind == STATUS, events.c.created_at >= since)
            .distinct()
        )

        def op(conn: Connection) -> tuple[int | None, Rows, AnyRow]:
            queue_length = conn.execute(
                sa.select(sa.func.count()).where(
                    conversations.c.status == ConversationStatus.WAITING.value
                )
            ).scalar()
            rows = conn.execute(
                sa.select(events.c.conversation_id, events.c.payload, events.c.created_at)
                .where(events.c.kind == STATUS, events.c.conversation_id.in_(recent))
                .order_by(events.c.conversation_id, events.c.seq)
            ).all()
            rated = conn.execute(
                sa.select(sa.func.avg(ratings.c.stars), sa.func.count()).where(
                    ratings.c.created_at >= since
                )
            ).one()
            return queue_length, rows, rated

        queue_length, rows, rated = await self._access.read(op)
        waits: list[float] = []
        handles: list[float] = []
        reasons: dict[str, int] = {}
        current: str | None = None
        waiting_at: datetime | None = None
        agent_at: datetime | None = None
        for row in rows:
            if row.conversation_id != current:
                current, waiting_at, agent_at = row.conversation_id, None, None
            status = (row.payload or {}).get("status")
            at: datetime = row.created_at
            if status == ConversationStatus.WAITING.value:
                waiting_at = at
                if at >= since:
                    reason = _reason(row.payload) or "unknown"
                    reasons[reason] = reasons.get(reason, 0) + 1
            elif status == ConversationStatus.AGENT.value:
                if waiting_at is not None and at >= since:
                    waits.append((at - waiting_at).total_seconds())
                waiting_at, agent_at = None, at
            else:
                if agent_at is not None and at >= since:
                    handles.append((at - agent_at).total_seconds())
                waiting_at, agent_at = None, None
        return DeskNumbers(
            queue_length=int(queue_length or 0),
            taken=len(waits),
            average_wait_s=sum(waits) / len(waits) if waits else None,
            average_handle_s=sum(handles) / len(handles) if handles else None,
            escalations=MappingProxyType(dict(sorted(reasons.items()))),
            average_rating=None if rated[0] is None else float(rated[0]),
            ratings=int(rated[1] or 0),
        )


# The per-message statements, built once: a statement built per call costs more in
# SQLAlchemy than SQLite takes to run it; those run for every message are also compiled
# once and run on the DB-API cursor (channels/prepared.py).
_INSERT_CONVERSATION: Final = conversations.insert()
_INSERT_EVENT: Final = Prepared(
    events.insert().values(
        {c.key: sa.bindparam(c.key, type_=c.type) for c in events.c if c.key != "id"}
    )
)
_CONVERSATION: Final = Prepared(
    sa.select(conversations).where(conversations.c.id == sa.bindparam("cid"))
)
_NEXT_SEQ_VALUES: Final = {
    "last_seq": conversations.c.last_seq + 1,
    "updated_at": sa.bindparam("now", type_=UTCDateTime()),
}
_NEXT_SEQ: Final = Prepared(
    conversations.update()
    .where(conversations.c.id == sa.bindparam("cid"))
    .values(_NEXT_SEQ_VALUES)
    .returning(conversations.c.last_seq, conversations.c.status)
)
_NEXT_SEQ_AND_STATUS: Final = Prepared(
    conversations.update()
    .where(conversations.c.id == sa.bindparam("cid"))
    .values({**_NEXT_SEQ_VALUES, "status": sa.bindparam("new_status")})
    .returning(conversations.c.last_seq, conversations.c.status)
)
_TURN_COLUMNS: Final = (events.c.role, events.c.text, events.c.created_at, events.c.payload)
_TURNS: Final = Prepared(
    sa.select(*_TURN_COLUMNS)
    .where(events.c.conversation_id == sa.bindparam("cid"), events.c.kind == MESSAGE)
    .order_by(events.c.seq.desc())
    .limit(sa.bindparam("limit"))
)
_TURNS_BEFORE: Final = Prepared(
    sa.select(*_TURN_COLUMNS)
    .where(
        events.c.conversation_id == sa.bindparam("cid"),
        events.c.kind == MESSAGE,
        events.c.seq < sa.bindparam("before"),
    )
    .order_by(events.c.seq.desc())
    .limit(sa.bindparam("limit"))
)


def _append(
    conn: Connection,
    *,
    conversation_id: str,
    kind: str,
    role: Role | None,
    text: str | None,
    client_id: str | None,
    payload: Mapping[str, object],
    now: datetime,
    status: ConversationStatus | None = None,
    refuse_closed: bool = False,
) -> StoredEvent:
    """Take the next sequence number and insert the event, in the caller's transaction.

    The ``UPDATE ... RETURNING`` locks the conversation row until the transaction ends, so
    concurrent appends to one conversation get consecutive numbers, and a rolled-back
    append gives its number back.
    """
    if kind == MESSAGE and (role is None or text is None):
        raise ValueError(f"a message needs a role and a text, got role={role!r} text={text!r}")
    if text is not None:
        # PostgreSQL cannot store NUL in text; replace it on every backend alike.
        text = text.replace("\x00", "\ufffd")
    data = _json_object(payload)
    if status is None:
        numbered = _NEXT_SEQ.first(conn, {"cid": conversation_id, "now": now})
    else:
        numbered = _NEXT_SEQ_AND_STATUS.first(
            conn, {"cid": conversation_id, "now": now, "new_status": status.value}
        )
    if numbered is None:
        raise UnknownConversation(conversation_id)
    seq, current = numbered
    if refuse_closed and current == ConversationStatus.CLOSED.value:
        raise ClosedConversation(conversation_id)  # the caller's transaction rolls back
    _INSERT_EVENT.run(
        conn,
        {
            "conversation_id": conversation_id,
            "seq": seq,
            "kind": kind,
            "role": None if role is None else role.value,
            "text": text,
            "client_id": client_id,
            "payload": data,
            "created_at": now,
        },
    )
    return StoredEvent(
        conversation_id, int(seq), kind, role, text, client_id, MappingProxyType(data), now
    )


TurnRows: TypeAlias = list[tuple[Any, ...]]
"""(role, text, created_at, payload) rows."""


def _turns_rows(
    conn: Connection, conversation_id: str, limit: int, before_seq: int | None
) -> TurnRows:
    """The last ``limit`` messages of a conversation, newest first (see ``_turns``)."""
    if before_seq is None:
        return _TURNS.all(conn, {"cid": conversation_id, "limit": limit})
    params = {"cid": conversation_id, "limit": limit, "before": before_seq}
    return _TURNS_BEFORE.all(conn, params)


def _turns(rows: TurnRows) -> tuple[Turn, ...]:
    """Oldest first; a bot turn keeps the intent it answered (its payload's ``intent``)."""
    return tuple(
        Turn(Role(role), text or "", at, _intent_of(payload))
        for role, text, at, payload in reversed(rows)
    )


def _intent_of(payload: Any) -> str | None:
    if isinstance(payload, str):  # a driver that hands JSON back as text
        payload = json.loads(payload) if payload else None
    intent = payload.get("intent") if isinstance(payload, dict) else None
    return intent if isinstance(intent, str) else None


def _require(conn: Connection, conversation_id: str) -> None:
    found = conn.execute(
        sa.select(conversations.c.id).where(conversations.c.id == conversation_id)
    ).first()
    if found is None:
        raise UnknownConversation(conversation_id)


def _record(row: Mapping[Any, Any]) -> ConversationRecord:
    return ConversationRecord(
        id=row["id"],
        channel=row["channel"],
        status=ConversationStatus(row["status"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_seq=int(row["last_seq"]),
        low_confidence_streak=int(row["low_confidence_streak"]),
    )


def _event(row: sa.RowMapping) -> StoredEvent:
    return StoredEvent(
        conversation_id=row["conversation_id"],
        seq=int(row["seq"]),
        kind=row["kind"],
        role=None if row["role"] is None else Role(row["role"]),
        text=row["text"],
        client_id=row["client_id"],
        payload=MappingProxyType(dict(row["payload"] or {})),
        created_at=row["created_at"],
    )


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"expected a timezone-aware datetime (e.g. datetime.now(UTC)), got naive {value!r}"
        )
    return value.astimezone(UTC)


def _json_object(payload: Mapping[str, object]) -> dict[str, object]:
    """A plain JSON copy of ``payload``, so what is returned equals what is read back."""
    try:
        data: dict[str, object] = json.loads(json.dumps(dict(payload), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"event payload must be JSON-serialisable: {exc}") from exc
    return data


def _check_id(name: str, value: str, max_chars: int) -> None:
    # Checked here so that SQLite (no length limits) and PostgreSQL (no NUL) behave alike.
    if not 0 < len(value) <= max_chars:
        raise ValueError(f"{name} must have 1 to {max_chars} characters, got {len(value)}")
    if not clean_id(value):
        raise ValueError(f"{name} must hold no control characters or lone surrogates")


def clean_id(value: str) -> bool:
    """Whether ``value`` can be an id: no NUL or other control character (PostgreSQL
    cannot store NUL), no lone surrogate (not UTF-8: no store or JSON encoder takes it)."""
    return not any(c < " " or c == "\x7f" or "\ud800" <= c <= "\udfff" for c in value)


def _check_limit(limit: int) -> None:
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
"""Looks like an email address: a name, one @ and a dotted domain (not a full RFC check;
the agent logs in with it, nothing is sent to it)."""


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _agent(row: sa.RowMapping) -> AgentRecord:
    return AgentRecord(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        role=AgentRole(row["role"]),
        created_at=row["created_at"],
    )


def _reason(payload: Mapping[str, object] | None) -> str | None:
    reason = (payload or {}).get("reason")
    return None if reason is None else str(reason)
