"""The text forms of screen actions and detectors that configs write ('click:120,80', 'pixel:5,5,#00ff00,30,1').

Pure parsing into small frozen records; nothing here touches X11, numpy or files, so the config module can
validate with it at load time. Building detectors from the records happens in `envs.screen.detectors`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["ACTION_SYNTAX", "TRIGGER_SYNTAX", "ActionSpec", "TriggerSpec", "parse_action", "parse_colour",
           "parse_trigger"]

ACTION_SYNTAX = "'noop', 'click:X,Y', 'move:X,Y' or 'key:NAME' with optional modifiers ('key:ctrl+n')"
TRIGGER_SYNTAX = "'pixel:X,Y,#RRGGBB,TOLERANCE,REWARD' or 'template:PNG_PATH,THRESHOLD,REWARD'"

_KEY_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class ActionSpec:
    """One entry of a screen env's action table; x, y are relative to the observed region."""

    text: str
    kind: Literal["noop", "click", "move", "key"]
    x: int = 0
    y: int = 0
    keys: tuple[str, ...] = ()
    """Key names pressed together in order and released in reverse (e.g. ('ctrl', 'n'))."""


@dataclass(frozen=True)
class TriggerSpec:
    """A detector with the reward it pays: a pixel colour probe or a template match (region coordinates)."""

    text: str
    kind: Literal["pixel", "template"]
    reward: float
    x: int = 0
    y: int = 0
    rgb: tuple[int, int, int] = (0, 0, 0)
    tolerance: int = 0
    path: str = ""
    threshold: float = 0.0


def _ints(parts: list[str]) -> list[int]:
    values = [int(p) for p in parts]
    if any(v < 0 for v in values):
        raise ValueError("negative coordinate")
    return values


def parse_action(text: str) -> ActionSpec:
    """Return the action `text` describes, or raise ValueError naming the expected forms."""
    kind, _, args = text.partition(":")
    error = ValueError(f"{text!r}: expected {ACTION_SYNTAX}")
    if kind == "noop" and not args:
        return ActionSpec(text, "noop")
    if kind in ("click", "move"):
        try:
            x, y = _ints(args.split(","))
        except ValueError:
            raise error from None
        return ActionSpec(text, kind, x, y)
    keys = tuple(args.split("+"))
    if kind == "key" and all(_KEY_NAME.match(k) for k in keys):
        return ActionSpec(text, "key", keys=keys)
    raise error


def parse_colour(text: str) -> tuple[int, int, int]:
    """Return the (r, g, b) of '#RRGGBB', or raise ValueError."""
    if not _COLOUR.match(text):
        raise ValueError(f"{text!r} is not a #RRGGBB colour")
    return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def _trigger(text: str, kind: str, args: str) -> TriggerSpec | None:
    if kind == "pixel":
        x, y, colour, tolerance, reward = args.split(",")
        x, y, tolerance = _ints([x, y, tolerance])
        return TriggerSpec(text, "pixel", _finite(reward), x, y, parse_colour(colour), tolerance)
    if kind == "template":
        path, threshold, reward = args.rsplit(",", 2)
        if path and 0.0 < _finite(threshold) <= 1.0:
            return TriggerSpec(text, "template", _finite(reward), path=path, threshold=float(threshold))
    return None


def parse_trigger(text: str) -> TriggerSpec:
    """Return the detector `text` describes, or raise ValueError naming the expected forms."""
    kind, _, args = text.partition(":")
    error = ValueError(f"{text!r}: expected {TRIGGER_SYNTAX}")
    try:
        spec = _trigger(text, kind, args)
    except ValueError:
        raise error from None
    if spec is None:
        raise error
    return spec
