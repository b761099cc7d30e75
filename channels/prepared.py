"""The per-message statements, compiled once and run straight on the DB-API cursor.

SQLAlchemy's ``Connection.execute`` costs 60-100 us of Python a statement (an execution
context, the compiled-cache lookup, event dispatch, a result object) where SQLite runs the
statement itself in a few; with four statements a message it was most of the store writer's
and readers' time under load (BENCHMARKS.md, issue 5). A :class:`Prepared` statement keeps
SQLAlchemy's part that matters, its compiler and its types' bind and result processors,
and skips the rest: it runs on the connection's own DB-API connection, inside the
transaction the SQLAlchemy ``Connection`` holds (begun first where it has none), and turns
the driver's errors into SQLAlchemy's (``IntegrityError`` ...) as ``execute`` would. The
``before_cursor_execute`` and ``after_cursor_execute`` listeners still see each statement
(with no execution context).

Only for statements run on every message; everything else goes through ``execute``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...] | None
    """The parameters' order for a positional paramstyle (SQLite's ``?``), else None."""
    defaults: Mapping[str, Any]
    """Values bound in the statement itself (``kind == 'message'``)."""
    binds: tuple[tuple[str, Processor], ...]
    results: tuple[Processor | None, ...]
    columns: tuple[str, ...]


class Prepared:
    """One Core statement, compiled once per dialect."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        # by dialect object: two drivers of one database differ in paramstyle and types
        self._compiled: weakref.WeakKeyDictionary[Dialect, _Compiled] = weakref.WeakKeyDictionary()

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = cast(SQLCompiler, self.statement.compile(dialect=dialect))
        positional = compiled.positional and compiled.positiontup is not None
        binds = tuple(
            (name, processor)
            for name, bind in compiled.binds.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        )
        columns = getattr(self.statement, "exported_columns", ())
        return _Compiled(
            sql=compiled.string,
            names=tuple(compiled.positiontup or ()) if positional else None,
            defaults={n: b.value for n, b in compiled.binds.items() if b.value is not None},
            binds=binds,
            results=tuple(
                c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
            ),
            columns=tuple(c.key for c in columns),
        )

    def _cursor(
        self, conn: Connection, params: Mapping[str, Any], autobegin: bool = True
    ) -> tuple[Any, _Compiled]:
        dialect = conn.dialect
        compiled = self._compiled.get(dialect)
        if compiled is None:
            compiled = self._compiled[dialect] = self._compile(dialect)
        values = {**compiled.defaults, **params}
        for name, processor in compiled.binds:
            if name in values:
                values[name] = processor(values[name])
        args: Sequence[Any] | Mapping[str, Any] = (
            values if compiled.names is None else [values[name] for name in compiled.names]
        )
        if autobegin and not conn.in_transaction():
            conn.begin()  # as execute() would (autobegin): the reads share one snapshot
        dbapi_connection = conn.connection.dbapi_connection
        cursor = dbapi_connection.cursor()  # type: ignore[union-attr]
        events = conn.dispatch  # listeners (tracing, tests) see the statement, context None
        try:
            if events.before_cursor_execute:
                events.before_cursor_execute(conn, cursor, compiled.sql, args, None, False)
            cursor.execute(compiled.sql, args)
            if events.after_cursor_execute:
                events.after_cursor_execute(conn, cursor, compiled.sql, args, None, False)
        except dialect.loaded_dbapi.Error as exc:
            cursor.close()
            lost = dialect.is_disconnect(exc, dbapi_connection, cursor)
            if lost:
                conn.invalidate(exc)  # the pool discards it, as execute() would
            raise DBAPIError.instance(
                compiled.sql,
                args,
                exc,
                dialect.loaded_dbapi.Error,
                connection_invalidated=lost,
                dialect=dialect,
            ) from exc
        except BaseException:
            cursor.close()
            raise
        return cursor, compiled

    def run(self, conn: Connection, params: Mapping[str, Any], *, autobegin: bool = True) -> int:
        """Execute; the number of rows it matched. ``autobegin=False`` runs it outside a
        transaction (``BEGIN`` itself, from a ``begin`` listener)."""
        cursor, _ = self._cursor(conn, params, autobegin)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Execute; every row, as tuples of processed values in column order."""
        cursor, compiled = self._cursor(conn, params)
        try:
            rows = cursor.fetchall()
        finally:
            cursor.close()
        return [_processed(row, compiled.results) for row in rows]

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """Execute; the first row (the rest discarded), or None."""
        cursor, compiled = self._cursor(conn, params)
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        return None if row is None else _processed(row, compiled.results)

    def mapping(self, conn: Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """:meth:`first` as a dict by column key."""
        row = self.first(conn, params)
        if row is None:
            return None
        return dict(zip(self._compiled[conn.dialect].columns, row, strict=True))


def _processed(row: Sequence[Any], processors: tuple[Processor | None, ...]) -> tuple[Any, ...]:
    return tuple(
        value if processor is None or value is None else processor(value)
        for value, processor in zip(row, processors, strict=True)
    )
