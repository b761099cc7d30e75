"""Server settings: typed, validated when built, passed in (env prefix ``FRONTDESK_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRONTDESK_", extra="forbid", frozen=True)

    home: Path = Path(".frontdesk")
    """Data folder: the SQLite store and the model registry (``models/``)."""
    bot: Path = Path("examples/shop")
    """The bot folder (``bot.yml``, actions module)."""
    database_url: str | None = None
    """SQLAlchemy async URL; default SQLite in ``home``."""
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    action_url: str | None = None
    """Remote rasa-sdk action server; overrides ``actions.url`` in bot.yml."""
    max_frame_bytes: int = Field(default=16_384, ge=256)
    max_text_chars: int = Field(default=2_000, ge=1)
    rate_limit_messages: int = Field(default=20, ge=1)
    """Messages a connection may send per ``rate_limit_window_s`` before it is closed."""
    rate_limit_window_s: float = Field(default=10.0, gt=0)
    batch_wait_ms: float = Field(default=3.0, ge=0)
    """How long the micro-batcher gathers concurrent messages before one encoder pass."""
    batch_size: int = Field(default=32, ge=1)
    replay_limit: int = Field(default=1_000, ge=1)
    reload_interval_s: float = Field(default=2.0, ge=0)
    """How often the server checks the registry's ``current`` pointer for a new bundle
    (hot swap; 0 turns it off)."""

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    def store_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.home / 'frontdesk.db').resolve()}"
