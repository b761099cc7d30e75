"""Shared fixtures: the demo bot trained once per session (a tiny real model)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.channels.replicas import Replica

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "examples" / "shop"
ARTIFACTS = ROOT / "test-artifacts"

REQUIRE_SERVICES = bool(os.environ.get("FRONTDESK_REQUIRE_SERVICES"))
"""Set by CI (.ci/run): a service that is not reachable fails the tests instead of skipping."""
POSTGRES = os.environ.get(
    "FRONTDESK_TEST_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS = os.environ.get("FRONTDESK_TEST_REDIS", "redis://127.0.0.1:6379/0")


def service_unavailable(service: str, url: str, why: object, hint: str) -> None:
    """Skip the test with a visible reason, or fail it where services are required."""
    message = f"{service} not reachable at {url} ({why}); {hint}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} [FRONTDESK_REQUIRE_SERVICES is set]", pytrace=False)
    pytest.skip(message)


def redis_problem(url: str) -> str | None:
    """Why Redis at ``url`` does not answer PING, or None when it does."""
    try:
        import redis
    except ImportError:
        return "the redis package is missing: pip install -e '.[redis]'"
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis test server (FRONTDESK_TEST_REDIS); tests isolate their keys by prefix."""
    problem = redis_problem(REDIS)
    if problem is not None:
        service_unavailable("Redis", REDIS, problem, "set FRONTDESK_TEST_REDIS to a server")
    return REDIS


@contextlib.asynccontextmanager
async def private_postgres() -> AsyncIterator[str]:
    """A new database on the PostgreSQL test server (FRONTDESK_TEST_POSTGRES), dropped when
    the block ends: concurrent runs against one server do not see each other."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import create_async_engine

    admin = create_async_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    name = f"frontdesk_test_{uuid.uuid4().hex[:12]}"
    try:
        async with asyncio.timeout(10), admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        await admin.dispose()
        service_unavailable(
            "PostgreSQL",
            POSTGRES,
            f"{type(exc).__name__}: {exc}".splitlines()[0],
            "set FRONTDESK_TEST_POSTGRES to a server where this user may create databases",
        )
    try:
        yield make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture(scope="session")
async def postgres_database() -> AsyncIterator[str]:
    """This run's private PostgreSQL database, shared by the session's tests."""
    async with private_postgres() as url:
        yield url


@pytest.fixture(scope="session")
def shop_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FRONTDESK_HOME whose registry holds the demo bot, trained once for the session."""
    from retrieval.registry import Registry
    from training.args import TrainingArguments
    from training.pipeline import train_bot

    home = tmp_path_factory.mktemp("home")
    train_bot(SHOP, Registry(home / "models"), args=TrainingArguments(epochs=4), progress=False)
    return home


@pytest.fixture(scope="session")
def shop_bundle(shop_home: Path) -> object:
    """The demo bundle, loaded once (bundles hold no conversation state)."""
    from bot.definition import load_bot
    from channels.runtime import load_current_bundle

    return load_current_bundle(shop_home / "models", load_bot(SHOP))


@pytest.fixture(scope="session")
def artifacts() -> Iterator[Path]:
    ARTIFACTS.mkdir(exist_ok=True)
    yield ARTIFACTS


@pytest.fixture
def shop_copy(tmp_path: Path) -> Path:
    """A private copy of the demo bot folder (tests may edit it)."""
    target = tmp_path / "shop"
    shutil.copytree(SHOP, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture(scope="session")
def replicas(
    shop_home: Path,
    postgres_database: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Replica]]:
    """Two ``frontdesk serve`` processes of the demo bot on one PostgreSQL database (this
    run's private one, ``postgres_database``) and one Redis, for the session; each
    ``Replica`` has its ``address`` (``127.0.0.1:PORT``) and its log."""
    from tests.channels.replicas import running_replicas

    with running_replicas(
        shop_home,
        database_url=postgres_database,
        redis_url=redis_url,
        log_dir=tmp_path_factory.mktemp("replicas"),
    ) as started:
        yield started
