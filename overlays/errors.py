"""The overlays package's exception family."""

from __future__ import annotations

__all__ = ["OverlayError"]


class OverlayError(Exception):
    """Raised when a frame cannot be composed; the message says what was given and what to do."""
