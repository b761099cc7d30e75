"""Structured logs: one JSON object a line, with the conversation id when there is one.

The id travels in a context variable, set where a conversation's work starts (the widget
connection after ``hello``, the service answering a message), so every record logged below
it, in any module, carries it without being passed along.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

conversation_id: ContextVar[str | None] = ContextVar("conversation_id", default=None)

LogFormat = Literal["json", "text"]


class ConversationFilter(logging.Filter):
    """Adds ``conversation_id`` (or ``None``) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.conversation_id = conversation_id.get()
        return True


class NoQueryStrings(logging.Filter):
    """Drops the query string from uvicorn's access lines: a webhook's handshake carries
    its verify token there (``hub.verify_token``), and no query of ours is worth a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = args[2].split("?", 1)[0]
            record.args = (*args[:2], path, *args[3:])
        return True


def configure(log_format: LogFormat, level: int = logging.INFO) -> None:
    """Route the root logger (and uvicorn's) to stderr in ``log_format``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ConversationFilter())
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(conversation_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO, and provider URLs hold secrets (Telegram's token)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, NoQueryStrings) for f in access.filters):
        access.addFilter(NoQueryStrings())
