"""The exception root of ``channels`` and the one place errors map to wire codes."""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """Websocket close codes of ``/ws/chat`` (documented in docs/protocol.md)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    TOO_BIG = 1009
    """A frame larger than ``FRONTDESK_MAX_FRAME_BYTES``."""
    SERVER_ERROR = 1011
    BAD_TOKEN = 4401
    """``hello`` named a conversation with a missing or wrong token."""
    FLOODING = 4429
    """More messages than the rate limit allows."""
    TOO_MANY_CONNECTIONS = 4430
    """More new connections from one address than ``FRONTDESK_IP_CONNECT_RATE`` allows."""
    SLOW_CLIENT = 4408
    """The connection's send queue is full: the client reads too slowly (it may reconnect
    and replay by ``last_seq``)."""


class ChannelError(Exception):
    """Root of every error raised by ``channels``; ``code`` goes into ``error`` frames, and
    ``client_id``, where set, names the refused ``message``: not stored, so the client
    takes it out of its outbox instead of resending it forever."""

    code = "internal_error"

    def __init__(self, message: str = "", client_id: str | None = None) -> None:
        super().__init__(message)
        self.client_id = client_id


class BadFrame(ChannelError):
    code = "bad_frame"


class ConversationClosed(ChannelError):
    code = "conversation_closed"


class NotReady(ChannelError):
    code = "not_ready"


class ActionFailed(ChannelError):
    code = "action_failed"
