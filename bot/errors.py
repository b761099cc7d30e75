"""The exception root of ``bot``; channels map these to HTTP statuses and close codes."""

from __future__ import annotations

from pathlib import Path


class BotError(Exception):
    """Root of every error raised by the ``bot`` package."""


class IllegalTransition(BotError):
    """A conversation was asked to move to a status it cannot reach from where it is."""


class DefinitionError(BotError):
    """A bot definition (``bot.yml``, Rasa ``nlu.yml`` / ``domain.yml``) is invalid."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {message}")
