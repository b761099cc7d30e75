"""Agents' passwords, console sessions, CSRF tokens and the login rate limit.

A session is a random token in an HttpOnly, SameSite=Strict cookie; the store keeps only
its keyed hash (HMAC with the server's secret key), so a leaked database opens no session,
and logging out deletes the row. The CSRF token is derived from the session token with the
same key: it needs no storage, changes with every login, and a page on another origin can
neither read it nor compute it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from channels.console.errors import TooManyAttempts
from channels.settings import Settings
from channels.store import AgentRecord, Store

COOKIE: Final = "frontdesk_console"
CSRF_HEADER: Final = "X-CSRF-Token"
SECRET_FILE: Final = "secret_key"
MIN_PASSWORD_CHARS: Final = 10

_hasher = PasswordHasher()


@functools.cache
def _decoy_hash() -> str:
    """Verified against when the email is unknown, so that a wrong email costs one argon2
    verification like a wrong password and the answer time tells nothing about who has an
    account. Made once per process: hashing it on every attempt would make unknown emails
    cost twice as long, the opposite leak."""
    return _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (slow on purpose: call it off the event loop)."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def load_secret_key(settings: Settings) -> bytes:
    """``FRONTDESK_SECRET_KEY``, else the key in ``home/secret_key``, created (readable by
    its owner only) on first use. Replicas on several machines must set the setting."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode("utf-8")
    path = settings.home / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(48))
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = path.read_text().strip()
    if len(key) < 32:
        raise ValueError(
            f"{path} holds a secret key of {len(key)} characters; delete it (a new one is "
            "made) or set FRONTDESK_SECRET_KEY to at least 32 random characters"
        )
    return key.encode("utf-8")


@dataclass(frozen=True)
class Keys:
    secret: bytes

    def session_hash(self, token: str) -> str:
        return self._mac(b"session:", token).hexdigest()

    def csrf_token(self, token: str) -> str:
        return self._mac(b"csrf:", token).hexdigest()

    def _mac(self, purpose: bytes, token: str) -> hmac.HMAC:
        return hmac.new(self.secret, purpose + token.encode("utf-8"), hashlib.sha256)


@dataclass(frozen=True)
class AgentSession:
    agent: AgentRecord
    token: str
    csrf_token: str


class LoginLimits:
    """Failed logins per client address and per account (moving windows, in memory: with
    several replicas each enforces its own share, like ``channels.limits``)."""

    def __init__(self, per_address: str, per_account: str) -> None:
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.per_address = parse(per_address)  # checked by Settings
        self.per_account = parse(per_account)

    async def check(self, address: str, email: str) -> None:
        if not await self.limiter.test(self.per_address, "login-address", address):
            raise TooManyAttempts("too many failed logins from your address; wait and retry")
        if not await self.limiter.test(self.per_account, "login-account", email):
            raise TooManyAttempts("too many failed logins for this account; wait and retry")

    async def failed(self, address: str, email: str) -> None:
        await self.limiter.hit(self.per_address, "login-address", address)
        await self.limiter.hit(self.per_account, "login-account", email)


class Sessions:
    """Logs agents in and out, and finds the agent of a request's session cookie."""

    def __init__(self, settings: Settings, store: Store, keys: Keys) -> None:
        self.store = store
        self.keys = keys
        self.lifetime = timedelta(hours=settings.session_hours)
        self.limits = LoginLimits(
            settings.login_failures_per_address, settings.login_failures_per_account
        )

    async def login(
        self, email: str, password: str, address: str, now: datetime
    ) -> AgentSession | None:
        """A new session, or None for a wrong email or password; raises
        :class:`TooManyAttempts` once the address or the account had too many failures."""
        email = email.strip().lower()
        await self.limits.check(address, email)
        found = await self.store.agent_login(email)
        stored = found[1] if found is not None else await asyncio.to_thread(_decoy_hash)
        ok = await asyncio.to_thread(verify_password, stored, password)
        if found is None or not ok:
            await self.limits.failed(address, email)
            return None
        agent = found[0]
        if needs_rehash(stored):
            await self.store.set_password_hash(
                agent.id, await asyncio.to_thread(hash_password, password)
            )
        token = secrets.token_urlsafe(32)
        await self.store.create_session(
            self.keys.session_hash(token), agent.id, now, now + self.lifetime
        )
        return AgentSession(agent, token, self.keys.csrf_token(token))

    async def find(self, token: str | None, now: datetime) -> AgentSession | None:
        if not token:
            return None
        agent = await self.store.session_agent(self.keys.session_hash(token), now)
        return None if agent is None else AgentSession(agent, token, self.keys.csrf_token(token))

    async def logout(self, token: str) -> None:
        await self.store.delete_session(self.keys.session_hash(token))

    def csrf_ok(self, session: AgentSession, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent, session.csrf_token)
