"""Recalibrating the Clash Royale detectors on real frames: record the emulator window, then print what each
configured box measures and what the detectors read.

    python -m envs.screen.calibrate record --display :0 --region 0 0 368 652 --out frames --count 240 --hz 2
    python -m envs.screen.calibrate measure frames [--set 'elixir_bar=[0.27, 0.96, 0.95, 0.99]' ...]

Procedure: record a battle (elixir going up and down, a tower falling, the result screen), run `measure`,
and for each frame compare the readings with what the frame shows. Where they differ, set the measured mean
colours (elixir_rgb, elixir_empty_rgb, own/enemy_tower_rgb, victory/defeat/draw_rgb) and, if a box misses
its target, its fractions, with `--set` until every reading is right; then copy the values into the `clash`
section of the YAML config. `--set` takes any ClashConfig field as key=JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from envs.errors import EnvError
from envs.screen.clash import CARD_SLOTS, ELIXIR_SEGMENTS, ClashLayout, Device, ScreenDevice, read_battle
from envs.screen.config import ClashConfig
from envs.screen.detectors import mean_colour, saturation
from envs.screen.replay import ReplayDevice

__all__ = ["describe_frame", "main", "parse_settings", "record"]

log = logging.getLogger(__name__)


def record(device: Device, out_dir: Path, count: int, interval_s: float) -> list[Path]:
    """Grab `count` frames `interval_s` apart into numbered PNGs in `out_dir`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = out_dir / f"frame-{i:06d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(device.grab(), cv2.COLOR_RGB2BGR))
        paths.append(path)
        device.sleep(interval_s)
    return paths


def describe_frame(frame: np.ndarray, cfg: ClashConfig) -> list[str]:
    """Return report lines: the detectors' reading, then the mean colour of every configured box."""
    layout = ClashLayout(frame.shape[1], frame.shape[0], cfg)
    state = read_battle(frame, layout)
    lines = [f"reading: in_battle={state.in_battle} elixir={state.elixir} result={state.result} "
             f"cards_ready={list(state.cards_ready)} enemy_towers={list(state.enemy_towers)} "
             f"own_towers={list(state.own_towers)}"]
    lines += [f"elixir segment {i + 1}: rgb {list(mean_colour(frame, layout.segment_box(i)))}"
              for i in range(ELIXIR_SEGMENTS)]
    lines += [f"card {i + 1}: rgb {list(mean_colour(frame, layout.card_box(i)))} "
              f"saturation {saturation(frame, layout.card_box(i)):.0f}" for i in range(CARD_SLOTS)]
    for side in ("enemy_towers", "own_towers"):
        lines += [f"{side}[{i}]: rgb {list(mean_colour(frame, layout.pixels(box)))}"
                  for i, box in enumerate(getattr(cfg, side))]
    lines.append(f"banner: rgb {list(mean_colour(frame, layout.pixels(cfg.banner)))}")
    return lines


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def parse_settings(pairs: Sequence[str]) -> ClashConfig:
    """Return ClashConfig with `key=JSON` overrides applied, or raise EnvError naming the bad pair."""
    values: dict[str, Any] = {"replay_dir": "recorded"}  # frames come from files: no display needed
    for pair in pairs:
        key, _, text = pair.partition("=")
        try:
            values[key] = _tuples(json.loads(text))
        except json.JSONDecodeError:
            raise EnvError(f"--set {pair!r}: expected key=JSON, e.g. 'elixir_rgb=[216, 64, 224]'") from None
    try:
        return ClashConfig(**values)
    except (TypeError, ValueError) as exc:
        raise EnvError(f"--set: {exc}") from None


def _measure(args: argparse.Namespace) -> None:
    cfg = parse_settings(args.set)
    device = ReplayDevice(args.frames)
    for i in range(len(device)):
        print(f"== frame {i}")
        print("\n".join(describe_frame(device.grab(), cfg)))


def _record(args: argparse.Namespace) -> None:
    device = ScreenDevice(args.display, tuple(args.region))
    try:
        paths = record(device, Path(args.out), args.count, 1.0 / args.hz)
    finally:
        device.close()
    print(f"recorded {len(paths)} frames into {args.out}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `record` or `measure` command; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m envs.screen.calibrate", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record", help="grab the emulator window into numbered PNGs")
    rec.add_argument("--display", required=True, help="X display of the emulator window, e.g. :0")
    rec.add_argument("--region", type=int, nargs=4, required=True, metavar=("X", "Y", "WIDTH", "HEIGHT"))
    rec.add_argument("--out", required=True, help="directory for the frames")
    rec.add_argument("--count", type=int, default=240)
    rec.add_argument("--hz", type=float, default=2.0)
    rec.set_defaults(run=_record)
    mea = commands.add_parser("measure", help="print the detectors' readings and box colours per frame")
    mea.add_argument("frames", help="directory of PNG frames")
    mea.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override a ClashConfig field")
    mea.set_defaults(run=_measure)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except EnvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
