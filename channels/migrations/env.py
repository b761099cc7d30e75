"""Alembic environment: migrations run on a connection handed in by ``Store.open``."""

from __future__ import annotations

from alembic import context

from channels.store import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through channels.store.Store.open(url) or channels.store.upgrade(url)"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
