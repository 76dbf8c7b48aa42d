"""The stream package's exception family."""

from __future__ import annotations

__all__ = ["StreamError"]


class StreamError(Exception):
    """Raised when the encoder or broadcast target fails; the message says what was given and what to do."""
