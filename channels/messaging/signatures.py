"""Pure checks of what providers send: webhook signatures and subscription handshakes.

Each check looks at the raw body and headers only (nothing is parsed before it passes) and
compares secrets in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from enum import Enum

SLACK_MAX_AGE_S = 5 * 60
"""Slack requests older (or newer) than this are refused: a captured request can't be replayed."""


class Verdict(Enum):
    OK = "ok"
    MISSING = "missing"
    """No signature (or secret, or timestamp) came with the request."""
    WRONG = "wrong"
    """A signature came and does not match."""
    STALE = "stale"
    """The signature matches a timestamp outside the accepted window (a replay)."""


def check_secret_token(expected: str, given: str | None) -> Verdict:
    """Telegram: the ``X-Telegram-Bot-Api-Secret-Token`` header equals the configured secret."""
    if not given:
        return Verdict.MISSING
    if hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        return Verdict.OK
    return Verdict.WRONG


def hub_signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends with ``body`` (WhatsApp, Messenger)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def check_hub_signature(secret: str, body: bytes, given: str | None) -> Verdict:
    """WhatsApp and Messenger: ``sha256=`` + HMAC-SHA256(app secret, raw body)."""
    if not given:
        return Verdict.MISSING
    if hmac.compare_digest(given.encode("utf-8"), hub_signature(secret, body).encode("utf-8")):
        return Verdict.OK
    return Verdict.WRONG


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Slack-Signature`` value Slack sends with ``body`` at ``timestamp``."""
    base = b"v0:" + timestamp.encode("utf-8") + b":" + body
    return "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def check_slack_signature(
    secret: str, body: bytes, timestamp: str | None, given: str | None, now: float
) -> Verdict:
    """Slack: ``v0=`` + HMAC-SHA256(signing secret, ``v0:{timestamp}:{body}``), with the
    ``X-Slack-Request-Timestamp`` within :data:`SLACK_MAX_AGE_S` of ``now`` (Unix seconds)."""
    if not given or not timestamp:
        return Verdict.MISSING
    expected = slack_signature(secret, timestamp, body)
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        return Verdict.WRONG
    # Checked after the signature, so that a wrong signature is reported as wrong whatever
    # its timestamp; the timestamp is signed, so a stale one is a genuine old request.
    try:
        sent = int(timestamp)
    except ValueError:
        return Verdict.WRONG
    return Verdict.OK if abs(now - sent) <= SLACK_MAX_AGE_S else Verdict.STALE


def subscription_challenge(params: Mapping[str, str], verify_token: str) -> str | None:
    """Meta's webhook handshake, ``GET ?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C``:
    the challenge ``C`` to echo when ``T`` is the configured token, else ``None``."""
    mode = params.get("hub.mode")
    token = params.get("hub.verify_token") or ""
    challenge = params.get("hub.challenge")
    if mode != "subscribe" or challenge is None:
        return None
    if not hmac.compare_digest(token.encode("utf-8"), verify_token.encode("utf-8")):
        return None
    return challenge
