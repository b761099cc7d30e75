"""Server settings: typed, validated when built, passed in (env prefix ``FRONTDESK_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from limits import parse
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATABASE_FILE = "frontdesk.db"
"""The SQLite conversation store in ``home`` when no ``database_url`` is set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRONTDESK_", extra="forbid", frozen=True)

    home: Path = Path(".frontdesk")
    """Data folder: the SQLite store and the model registry (``models/``)."""
    bot: Path = Path("examples/shop")
    """The bot folder (``bot.yml``, actions module)."""
    database_url: str | None = None
    """SQLAlchemy async URL; default SQLite in ``home``. Replicas share one PostgreSQL
    database (``postgresql+asyncpg://...``)."""
    redis_url: str | None = None
    """Redis for the bus and the per-conversation locks (``redis://host:6379/0``), needed
    when several server processes serve one bot (docs/scale-out.md); unset: in-process."""
    lock_ttl_s: float = Field(default=6.0, gt=0)
    """A conversation's Redis lock expires this long after its holder stopped renewing it
    (renewed every third of it: a crashed replica blocks its conversations at most this
    long)."""
    redis_max_connections: int = Field(default=50, ge=2)
    """The Redis connections a process's conversation locks use at most; a command that
    finds them all busy waits for one."""
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    action_url: str | None = None
    """Remote rasa-sdk action server; overrides ``actions.url`` in bot.yml."""
    max_frame_bytes: int = Field(default=16_384, ge=256)
    max_text_chars: int = Field(default=2_000, ge=1)
    rate_limit_messages: int = Field(default=20, ge=1)
    """Messages a connection may send per ``rate_limit_window_s`` before it is closed."""
    rate_limit_frames: int = Field(default=100, ge=1)
    """Frames of any kind (typing, invalid ones included) a connection may send per
    ``rate_limit_window_s`` before it is closed (4429)."""
    hello_timeout_s: float = Field(default=30.0, gt=0)
    """A widget connection that sends no ``hello`` within this long is closed (4408)."""
    rate_limit_window_s: float = Field(default=10.0, gt=0)
    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses (or CIDR ranges) of the reverse proxies whose ``X-Forwarded-For`` names the
    client; empty (the default): the header is ignored, the peer is the client (the
    per-address limits count it). ``*`` trusts every peer (only behind a proxy that sets
    the header itself)."""
    ws_compression: bool = False
    """permessage-deflate on websockets. Off by default: chat frames are small, and each
    compressed connection holds ~40 KB more of zlib state (10,000 idle widgets: ~0.4 GiB)."""
    ws_protocol: Literal["websockets-sansio", "wsproto"] = "websockets-sansio"
    """uvicorn's websocket implementation. Against uvicorn's older ``websockets`` one
    (deprecated), one run: saturated throughput 1.05x with either (BENCHMARKS.md)."""
    encoder_int8: bool = False
    """Serve the encoder's int8 export (per-channel, 7-bit weights): a message encodes in
    0.53x the time on 2 AVX-512 VNNI cores (0.68x on AVX2) and batches run 2.1x (1.39x)
    faster; Banking77 accuracy within 0.04 point, BANKING77-OOS in-scope accuracy up to 0.4
    point lower (BENCHMARKS.md)."""
    batch_wait_ms: float = Field(default=0.0, ge=0)
    """How long the micro-batcher holds a message for others to share its encoder pass.
    0: none; the messages that arrive while a pass runs make the next batch. Against 3 ms,
    four rounds: idle p50 0.79-0.99x, saturated throughput 0.91-1.13x (BENCHMARKS.md)."""
    batch_size: int = Field(default=32, ge=1)
    inference_workers: int = Field(default=1, ge=1)
    """Batches the micro-batcher runs at once (each takes what arrived while the others
    run). On 2 cores, 2 workers of 1 encoder thread each ran 1.1-1.5x the batches of one
    2-thread worker alone, but in the server (the event loop needs a core too) they gave
    0.85-0.88x the saturated throughput and 1.18-1.29x the idle p50: 1 stays the default
    (BENCHMARKS.md); larger machines may differ."""
    gc_freeze: bool = True
    """Once the model is loaded (and after each swap), freeze what is alive so that Python's
    garbage collector no longer walks it: p99 at 400 messages/s 0.65-0.74x (channels/heap.py,
    BENCHMARKS.md). Off only to rule it out when chasing memory."""
    encoder_threads: int = Field(default=0, ge=0)
    """Threads of one encoder pass (0: onnxruntime's choice, one per core); lower it where
    the server shares its cores."""
    workers: int = Field(default=1, ge=1)
    """Server processes on this machine, sharing its port (``frontdesk serve``). One Python
    process runs one thread at a time, so it cannot give a second core to its event loop;
    several need a shared store and bus, as replicas on several machines do: PostgreSQL
    (``database_url``) and Redis (``redis_url``), docs/scale-out.md. Each loads the model;
    with ``encoder_threads`` at 0 each gets an equal share of the cores."""
    replay_limit: int = Field(default=1_000, ge=1)
    """Events read from the store per page when a client replays after `last_seq`."""
    max_body_bytes: int = Field(default=1_048_576, ge=1_024)
    """Largest HTTP request body (webhooks, REST); larger ones get 413."""
    ip_connect_rate: str = "120/minute"
    """New widget connections per client address (then close code 4430)."""
    ip_request_rate: str = "300/minute"
    """REST-channel requests per client address (then 429)."""
    log_format: Literal["json", "text"] = "json"
    """``frontdesk serve``'s log lines: JSON objects (with ``conversation_id``) or text."""
    recover_on_start: bool = True
    """Answer the customer messages a crash left unanswered (``channels.recovery``); off
    only for tools that hold conversations of their own (``frontdesk test``)."""
    recovery_interval_s: float = Field(default=10.0, ge=0)
    """How often a server looks for customer messages nobody answered (a crash, a replica
    that died holding them) and answers them; it also looks once at start (0: only then)."""
    recovery_grace_s: float = Field(default=15.0, ge=0)
    """A message is looked at by the periodic sweep only once it is this old: younger ones
    are still being answered by whoever accepted them."""
    recovery_max_age_s: float = Field(default=600.0, gt=0)
    """An unanswered message older than this is not answered late: the customer gets one
    apology with the offer of a person instead."""
    recovery_window_s: float = Field(default=86400.0, gt=0)
    """How far back the sweep looks: older unanswered messages are left alone."""
    reload_interval_s: float = Field(default=2.0, ge=0)
    """How often the server checks the registry's ``current`` pointer for a new bundle
    (hot swap; 0 turns it off)."""

    # Messaging apps (docs/channels.md). A provider is served when all of its secrets are
    # set, and left off (404) when none is; some but not all is refused at startup.
    telegram_bot_token: SecretStr | None = None
    telegram_secret_token: SecretStr | None = None
    """The ``secret_token`` given to ``setWebhook`` (1-256 of ``A-Z a-z 0-9 _ -``)."""
    telegram_api_url: str = "https://api.telegram.org"
    slack_signing_secret: SecretStr | None = None
    slack_bot_token: SecretStr | None = None
    """The bot user OAuth token (``xoxb-...``) with the ``chat:write`` scope."""
    slack_api_url: str = "https://slack.com/api"
    whatsapp_app_secret: SecretStr | None = None
    whatsapp_access_token: SecretStr | None = None
    whatsapp_verify_token: SecretStr | None = None
    messenger_app_secret: SecretStr | None = None
    messenger_page_access_token: SecretStr | None = None
    messenger_verify_token: SecretStr | None = None
    graph_api_url: str = "https://graph.facebook.com/v23.0"
    """Meta's Graph API (WhatsApp Cloud API and Messenger), with its version."""
    outbound_attempts: int = Field(default=5, ge=1)
    """Tries of a call to a provider's API before the reply is given up (and logged)."""
    outbound_backoff_s: float = Field(default=0.5, ge=0)
    """The wait before the second try; it doubles before each further one."""
    outbound_max_delay_s: float = Field(default=30.0, gt=0)
    outbound_timeout_s: float = Field(default=10.0, gt=0)

    # The agent console (docs/console.md).
    secret_key: SecretStr | None = None
    """Keys the console's session and CSRF tokens; generated and kept in
    ``home/secret_key`` when unset. Every replica must share it."""
    session_hours: float = Field(default=12.0, gt=0)
    """How long a console login lasts."""
    login_failures_per_address: str = "20/10 minutes"
    """Failed console logins allowed from one client address (then 429)."""
    login_failures_per_account: str = "5/10 minutes"
    """Failed console logins allowed for one email (then 429, whatever the address)."""
    console_poll_s: float = Field(default=1.0, gt=0)
    """How often an agent's console socket re-reads the queue from the store (escalations
    made by any replica show up within this)."""

    @field_validator(
        "ip_connect_rate",
        "ip_request_rate",
        "login_failures_per_address",
        "login_failures_per_account",
    )
    @classmethod
    def _is_rate(cls, value: str) -> str:
        try:
            parse(value)
        except ValueError:
            raise ValueError(
                f"not a rate: {value!r} (write e.g. '60/minute', '5/second', '1000 per hour')"
            ) from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _is_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"not a Redis URL: {value!r} (write e.g. 'redis://127.0.0.1:6379/0')")
        return value

    @model_validator(mode="after")
    def _workers_share_a_store_and_a_bus(self) -> Settings:
        if self.workers > 1 and (self.redis_url is None or self.store_url().startswith("sqlite")):
            raise ValueError(
                f"workers={self.workers} needs PostgreSQL (FRONTDESK_DATABASE_URL="
                "postgresql+asyncpg://...) and Redis (FRONTDESK_REDIS_URL=redis://...): "
                "processes share conversations and live events through them "
                "(docs/scale-out.md); or set FRONTDESK_WORKERS=1"
            )
        return self

    def uvicorn_proxy_options(self) -> dict[str, Any]:
        """uvicorn's proxy-header options for :attr:`trusted_proxies` (uvicorn trusts
        127.0.0.1 by default: a same-host proxy passing a client's header through would
        let it choose its address)."""
        if not self.trusted_proxies:
            return {"proxy_headers": False, "forwarded_allow_ips": ""}
        return {"proxy_headers": True, "forwarded_allow_ips": ",".join(self.trusted_proxies)}

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    def store_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.home / DATABASE_FILE).resolve()}"
