"""Errors of training: each names what was wrong and, where it can, what to do."""

from __future__ import annotations


class TrainingError(ValueError):
    """Training cannot start or go on with what it was given."""
