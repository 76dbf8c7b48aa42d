"""Frame composition, pure: numpy frames and plain data in, a new uint8[H, W, 3] RGB frame out.

Nothing here imports the app, the stream, the trainer or the envs; nothing here mutates its inputs.
"""

from overlays.compose import clear_caches, compose, fallback_frame, format_value
from overlays.config import OverlayConfig
from overlays.errors import OverlayError
from overlays.layout import Layout, Rect
from overlays.state import ChatLine, Curve, Dream, OverlayState, Poll, Result

__all__ = [
    "ChatLine", "Curve", "Dream", "Layout", "OverlayConfig", "OverlayError", "OverlayState", "Poll", "Rect", "Result",
    "clear_caches", "compose", "fallback_frame", "format_value",
]
