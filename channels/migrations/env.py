"""Alembic environment for the conversation store (there is no alembic.ini).

``Store.open`` and ``channels.store.upgrade`` hand in a connection, already in a transaction,
through ``config.attributes["connection"]``: that is how migrations run inside a running
event loop (via ``AsyncConnection.run_sync``). Called without one, e.g. with
``channels.store.migrations_config(url)`` from a developer's shell to autogenerate a
revision, this connects to ``sqlalchemy.url`` itself with an async engine.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection, make_url

from channels.store import make_engine, metadata

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: later revisions rebuild tables in batch mode.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_configure)
    finally:
        await engine.dispose()


def _run() -> None:
    url = config.get_main_option("sqlalchemy.url")
    connection = config.attributes.get("connection")
    if context.is_offline_mode():  # `--sql`: print the DDL instead of running it
        if url is None:
            raise RuntimeError("set sqlalchemy.url to render migrations as SQL")
        context.configure(
            url=url,
            target_metadata=metadata,
            literal_binds=True,
            render_as_batch=make_url(url).get_backend_name() == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    elif connection is not None:
        _configure(connection)
    elif url is not None:
        asyncio.run(_run_with_own_engine(url))
    else:
        raise RuntimeError(
            "no database to migrate: use channels.store.Store.open(url), "
            "channels.store.upgrade(url) or channels.store.migrations_config(url)"
        )


_run()
