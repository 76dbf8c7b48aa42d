"""The trainer package's exception family."""

from __future__ import annotations

__all__ = ["TrainerError"]


class TrainerError(Exception):
    """Raised when the learner or its checkpoints fail; the message says what was given and what to do."""
