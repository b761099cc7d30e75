"""Conversations and their numbered events.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

# Migrations are frozen history: they spell out their types instead of importing them from
# channels.store (UTCDateTime there is DateTime(timezone=True) in the database), and their
# constraint names in full (op.f: env.py's metadata naming convention must not rename them).

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seq", sa.Integer(), server_default="0", nullable=False),
        sa.Column("low_confidence_streak", sa.Integer(), server_default="0", nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "status IN ('bot', 'waiting', 'agent', 'closed')",
            name=op.f("ck_conversations_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    op.create_index(op.f("ix_conversations_status"), "conversations", ["status"])
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("conversation_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("client_id", sa.String(128), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('message', 'status')", name=op.f("ck_events_kind")),
        sa.CheckConstraint(
            "role IS NULL OR role IN ('customer', 'bot', 'agent')", name=op.f("ck_events_role")
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_events_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("conversation_id", "seq", name=op.f("uq_events_conversation_id_seq")),
        sa.UniqueConstraint(
            "conversation_id", "client_id", name=op.f("uq_events_conversation_id_client_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("events")
    op.drop_index(op.f("ix_conversations_status"), table_name="conversations")
    op.drop_table("conversations")
