"""Conversations of messaging channels: the provider's id for the customer.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("external_id", sa.String(200), nullable=True))
    # NULLs are distinct on both backends: widget conversations carry none.
    op.create_index(
        op.f("ix_conversations_channel_external_id"),
        "conversations",
        ["channel", "external_id"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_conversations_channel_external_id"), table_name="conversations")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("external_id")
