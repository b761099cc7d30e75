"""Errors of training: each names what was wrong and, where it can, what to do."""

from __future__ import annotations

import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)


class TrainingError(ValueError):
    """Training cannot start or go on with what it was given."""


def log_skipped(problems: Iterable[object]) -> None:
    """Malformed input rows that training skipped, as warnings (the command line prints
    them itself)."""
    for problem in problems:
        log.warning("skipped: %s", problem)
