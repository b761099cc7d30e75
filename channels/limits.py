"""Per-address rate limits and the request body limit (documented in docs/protocol.md).

Per-connection limits (frame size, messages per window, send queue) live in ``channels/ws.py``;
these are the ones that apply before a connection or request is served. Counters are kept
in this process (``limits``' moving-window counter in memory): with several replicas behind a
load balancer, each enforces its own share.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from channels.metrics import Metrics

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LIMITED_HTTP_PREFIXES = ("/webhooks/rest",)
"""The anonymous HTTP channel. Not limited per address: the messaging webhooks (signed, from
the providers' few addresses) and Socket.IO (long-polling makes a request every few seconds
per customer, so customers behind one NAT would share a budget; its sockets have their own
message rate limit)."""


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class AddressLimits:
    """New widget connections and anonymous HTTP requests per client address."""

    def __init__(self, connect_rate: str, request_rate: str) -> None:
        self.limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self.connects = parse(connect_rate)  # checked by Settings
        self.requests = parse(request_rate)

    async def allow_connect(self, address: str) -> bool:
        return await self.limiter.hit(self.connects, "connect", address)

    async def allow_request(self, address: str) -> bool:
        return await self.limiter.hit(self.requests, "request", address)


class _BodyTooLarge(Exception):
    pass


class RequestLimits:
    """ASGI middleware: 413 for bodies over ``max_body_bytes`` (declared or streamed), 429
    for anonymous channels' requests over the per-address rate."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, addresses: AddressLimits, metrics: Metrics
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.addresses = addresses
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        if path.startswith(LIMITED_HTTP_PREFIXES) and not await self.addresses.allow_request(
            client_address(scope)
        ):
            self.metrics.refused.labels("http_rate").inc()
            await _refuse(send, 429, "too many requests from your address; retry later")
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            self.metrics.refused.labels("body_size").inc()
            await _refuse(send, 413, f"request body larger than {self.max_body_bytes} bytes")
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            self.metrics.refused.labels("body_size").inc()
            if not started:
                await _refuse(send, 413, f"request body larger than {self.max_body_bytes} bytes")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 429:
        headers.append((b"retry-after", b"60"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
