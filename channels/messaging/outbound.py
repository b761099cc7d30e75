"""Calls to providers' APIs with httpx: retried with exponential backoff on 5xx, 429 (after
its ``Retry-After``) and connection errors, never on another 4xx; given up after a number of
attempts with an error in the log.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from channels.messaging.provider import OutboundRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    """Tries in all, the first included."""
    backoff_s: float = 0.5
    """The wait before the second try; it doubles before each further one."""
    max_delay_s: float = 30.0
    """The longest wait between tries; a ``Retry-After`` asking for more gives up."""


def retryable(status: int | None) -> bool:
    """Whether a call that ended with ``status`` (``None``: no response) may succeed later."""
    return status is None or status == 429 or status >= 500


def retry_delay(
    policy: RetryPolicy, attempt: int, status: int | None, retry_after_s: float | None
) -> float | None:
    """Seconds to wait before trying again after try number ``attempt`` (1-based) ended with
    ``status`` (``None``: a connection error or timeout); ``None`` when not to try again."""
    if attempt >= policy.attempts or not retryable(status):
        return None
    delay = min(policy.backoff_s * 2.0 ** (attempt - 1), policy.max_delay_s)
    if status == 429 and retry_after_s is not None:
        if retry_after_s > policy.max_delay_s:
            return None
        delay = max(delay, retry_after_s)
    return delay


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from ``now``."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


class Sender:
    """One shared ``httpx.AsyncClient`` for every provider (connection pooling)."""

    def __init__(self, policy: RetryPolicy, timeout_s: float = 10.0) -> None:
        self.policy = policy
        self.client = httpx.AsyncClient(timeout=timeout_s)

    async def send(self, request: OutboundRequest) -> httpx.Response | None:
        """POST ``request``; the successful response, or ``None`` once retrying is over
        (logged as an error)."""
        attempt = 0
        while True:
            attempt += 1
            status: int | None = None
            retry_after: float | None = None
            try:
                response = await self.client.post(
                    request.url, json=dict(request.body), headers=dict(request.headers)
                )
            except httpx.TransportError as exc:
                detail = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return response
                status = response.status_code
                retry_after = _retry_after(response)
                detail = f"HTTP {status} {response.text[:200]!r}"
            delay = retry_delay(self.policy, attempt, status, retry_after)
            if delay is None:
                log.error("%s failed after %d attempt(s): %s", request.what, attempt, detail)
                return None
            log.warning(
                "%s failed (attempt %d of %d: %s); retrying in %.2fs",
                request.what,
                attempt,
                self.policy.attempts,
                detail,
                delay,
            )
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        await self.client.aclose()


def _retry_after(response: httpx.Response) -> float | None:
    seconds = parse_retry_after(response.headers.get("retry-after"), datetime.now(UTC))
    if seconds is not None or response.status_code != 429:
        return seconds
    # Telegram says it in the body: {"parameters": {"retry_after": 5}}
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("parameters"), dict):
        value = body["parameters"].get("retry_after")
        if isinstance(value, int | float):
            return float(value)
    return None
