"""The envs package's exception family."""

from __future__ import annotations

__all__ = ["EnvError"]


class EnvError(Exception):
    """Raised when an env cannot be made, reset or stepped; the message says what was given and what to do."""
