"""The console's errors and the one place they map to HTTP statuses and close codes."""

from __future__ import annotations

from enum import IntEnum

from channels.errors import ChannelError


class ConsoleCloseCode(IntEnum):
    """Close codes of the agent websocket ``/ws/console``."""

    NOT_LOGGED_IN = 4401
    """No console session (or an expired one): log in again."""
    WRONG_ORIGIN = 4403
    """The page that opened the socket is not served by this server."""


class ConsoleError(ChannelError):
    """Root of the console's errors; ``status`` is the HTTP status it maps to."""

    code = "console_error"
    status = 400


class NotLoggedIn(ConsoleError):
    code = "not_logged_in"
    status = 401


class Forbidden(ConsoleError):
    code = "forbidden"
    status = 403


class TooManyAttempts(ConsoleError):
    code = "too_many_attempts"
    status = 429


class NotFound(ConsoleError):
    code = "not_found"
    status = 404


class Conflict(ConsoleError):
    """The conversation is not in a state that allows this (taken by someone else, closed)."""

    code = "conflict"
    status = 409


class Invalid(ConsoleError):
    code = "invalid"
    status = 422
