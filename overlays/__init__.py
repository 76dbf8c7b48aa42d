"""Frame composition, pure: numpy frames and plain metrics in, a new uint8[H, W, 3] frame out.

Nothing here imports the app or the stream; it never mutates its inputs.
"""

from overlays.compose import Layout, compose, fallback_frame, format_value
from overlays.errors import OverlayError

__all__ = ["Layout", "OverlayError", "compose", "fallback_frame", "format_value"]
