"""The conversation store: SQLAlchemy Core (async) over SQLite or PostgreSQL.

It is the source of truth for conversations and their events (messages and status
changes), each with a per-conversation sequence number. The caller passes ``now``: the store
never reads the clock, so tests are deterministic. The schema is created by Alembic
migrations (``channels/migrations``), run by :meth:`Store.open`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot.types import ConversationStatus, Role, Turn

MIGRATIONS = Path(__file__).parent / "migrations"


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops tzinfo)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"expected a timezone-aware datetime, got naive {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("low_confidence_streak", sa.Integer, nullable=False, server_default="0"),
    sa.Column("meta", sa.JSON, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("role", sa.String(16), nullable=True),
    sa.Column("text", sa.Text, nullable=True),
    sa.Column("client_id", sa.String(64), nullable=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("conversation_id", "seq", name="uq_events_conversation_seq"),
    sa.UniqueConstraint("conversation_id", "client_id", name="uq_events_conversation_client"),
)


class StoreError(Exception):
    """Root of the store's errors."""


class UnknownConversation(StoreError):
    def __init__(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        super().__init__(f"no conversation with id {conversation_id!r}")


@dataclass(frozen=True)
class ConversationRecord:
    id: str
    channel: str
    status: ConversationStatus
    created_at: datetime
    updated_at: datetime
    last_seq: int
    low_confidence_streak: int


@dataclass(frozen=True)
class StoredEvent:
    conversation_id: str
    seq: int
    kind: str
    role: Role | None
    text: str | None
    client_id: str | None
    payload: Mapping[str, Any]
    created_at: datetime


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def upgrade(url: str) -> None:
    """Migrate the database at ``url`` to the newest schema (sync; for the CLI)."""
    import asyncio

    async def run() -> None:
        store = await Store.open(url)
        await store.close()

    asyncio.run(run())


def _run_migrations(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect to ``url`` and migrate its schema to head."""
        engine = _make_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(_run_migrations)
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception:
            return False
        return True

    async def create_conversation(
        self, channel: str, now: datetime
    ) -> tuple[ConversationRecord, str]:
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
        async with self.engine.begin() as conn:
            await conn.execute(
                conversations.insert().values(
                    id=record.id,
                    token_hash=hash_token(token),
                    channel=channel,
                    status=record.status.value,
                    created_at=now,
                    updated_at=now,
                    last_seq=0,
                    low_confidence_streak=0,
                    meta={},
                )
            )
        return record, token

    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(conversations).where(conversations.c.id == conversation_id)
                )
            ).first()
        return None if row is None else _record(row._mapping)

    async def check_token(self, conversation_id: str, token: str) -> bool:
        async with self.engine.connect() as conn:
            stored = (
                await conn.execute(
                    sa.select(conversations.c.token_hash).where(
                        conversations.c.id == conversation_id
                    )
                )
            ).scalar()
        if stored is None:
            return False
        return hmac.compare_digest(str(stored), hash_token(token))

    async def append_customer_message(
        self, conversation_id: str, client_id: str, text: str, now: datetime
    ) -> tuple[StoredEvent, bool]:
        """Store a customer message once per ``client_id``; (event, created)."""
        existing = await self._by_client_id(conversation_id, client_id)
        if existing is not None:
            return existing, False
        try:
            created = await self.append_event(
                conversation_id,
                kind="message",
                role=Role.CUSTOMER,
                text=text,
                payload={},
                now=now,
                client_id=client_id,
            )
        except IntegrityError:
            raced = await self._by_client_id(conversation_id, client_id)
            if raced is None:
                raise
            return raced, False
        return created, True

    async def append_event(
        self,
        conversation_id: str,
        *,
        kind: str,
        role: Role | None,
        text: str | None,
        payload: Mapping[str, Any],
        now: datetime,
        client_id: str | None = None,
    ) -> StoredEvent:
        """Store an event with the conversation's next sequence number."""
        async with self.engine.begin() as conn:
            seq = await self._next_seq(conn, conversation_id, now)
            await conn.execute(
                events.insert().values(
                    conversation_id=conversation_id,
                    seq=seq,
                    kind=kind,
                    role=role.value if role else None,
                    text=text,
                    client_id=client_id,
                    payload=dict(payload),
                    created_at=now,
                )
            )
        return StoredEvent(
            conversation_id, seq, kind, role, text, client_id, MappingProxyType(dict(payload)), now
        )

    async def set_status(
        self,
        conversation_id: str,
        status: ConversationStatus,
        *,
        reason: str | None,
        now: datetime,
    ) -> StoredEvent:
        """Move the conversation to ``status`` (a legal transition) and record it as an event."""
        payload = {"status": status.value, "reason": reason}
        async with self.engine.begin() as conn:
            current = (
                await conn.execute(
                    sa.select(conversations.c.status)
                    .where(conversations.c.id == conversation_id)
                    .with_for_update()
                )
            ).scalar()
            if current is None:
                raise UnknownConversation(conversation_id)
            ConversationStatus(current).check_transition(status)
            await conn.execute(
                conversations.update()
                .where(conversations.c.id == conversation_id)
                .values(status=status.value)
            )
            seq = await self._next_seq(conn, conversation_id, now)
            await conn.execute(
                events.insert().values(
                    conversation_id=conversation_id,
                    seq=seq,
                    kind="status",
                    role=None,
                    text=None,
                    client_id=None,
                    payload=payload,
                    created_at=now,
                )
            )
        return StoredEvent(
            conversation_id, seq, "status", None, None, None, MappingProxyType(payload), now
        )

    async def set_low_confidence_streak(self, conversation_id: str, value: int) -> None:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                conversations.update()
                .where(conversations.c.id == conversation_id)
                .values(low_confidence_streak=value)
            )
            if result.rowcount == 0:
                raise UnknownConversation(conversation_id)

    async def events_after(
        self, conversation_id: str, last_seq: int, limit: int = 1000
    ) -> list[StoredEvent]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(events)
                    .where(events.c.conversation_id == conversation_id, events.c.seq > last_seq)
                    .order_by(events.c.seq)
                    .limit(limit)
                )
            ).all()
        return [_event(row._mapping) for row in rows]

    async def recent_turns(self, conversation_id: str, limit: int) -> tuple[Turn, ...]:
        """The last ``limit`` messages as turns, oldest first."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(events.c.role, events.c.text, events.c.created_at)
                    .where(events.c.conversation_id == conversation_id, events.c.kind == "message")
                    .order_by(events.c.seq.desc())
                    .limit(limit)
                )
            ).all()
        return tuple(Turn(Role(r.role), r.text or "", r.created_at) for r in reversed(rows))

    async def _by_client_id(self, conversation_id: str, client_id: str) -> StoredEvent | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(events).where(
                        events.c.conversation_id == conversation_id,
                        events.c.client_id == client_id,
                    )
                )
            ).first()
        return None if row is None else _event(row._mapping)

    async def _next_seq(self, conn: AsyncConnection, conversation_id: str, now: datetime) -> int:
        seq = (
            await conn.execute(
                conversations.update()
                .where(conversations.c.id == conversation_id)
                .values(last_seq=conversations.c.last_seq + 1, updated_at=now)
                .returning(conversations.c.last_seq)
            )
        ).scalar()
        if seq is None:
            raise UnknownConversation(conversation_id)
        return int(seq)


def _record(row: sa.RowMapping) -> ConversationRecord:
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
        role=Role(row["role"]) if row["role"] else None,
        text=row["text"],
        client_id=row["client_id"],
        payload=MappingProxyType(dict(row["payload"] or {})),
        created_at=row["created_at"],
    )


def _make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True)
