"""Screen env parts without an X server: text forms, config checks, detectors, pacing, xboard board reading,
registration."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import chess
import cv2
import numpy as np
import pytest

import envs
from app.config import field_docs
from envs import EnvError
from envs.screen.config import ClashConfig, ScreenConfig, XboardConfig
from envs.screen.detectors import (
    PixelProbe,
    TemplateMatch,
    Trigger,
    build_trigger,
    colour_fraction,
    mean_colour,
    saturation,
)
from envs.screen.pacing import Pacer
from envs.screen.specs import ActionSpec, TriggerSpec, parse_action, parse_trigger
from envs.screen.xboard import (
    BLACK,
    DARK_RGB,
    EMPTY,
    LIGHT_RGB,
    WHITE,
    cell_square,
    find_board,
    occupancy_of,
    read_occupancy,
    square_cell,
    xboard_argv,
)

ACTION_ERROR = "expected 'noop', 'click:X,Y', 'move:X,Y' or 'key:NAME' with optional modifiers ('key:ctrl+n')"
TRIGGER_ERROR = "expected 'pixel:X,Y,#RRGGBB,TOLERANCE,REWARD' or 'template:PNG_PATH,THRESHOLD,REWARD'"


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("noop", ActionSpec("noop", "noop"), id="noop"),
    pytest.param("click:12,34", ActionSpec("click:12,34", "click", 12, 34), id="click"),
    pytest.param("move:0,7", ActionSpec("move:0,7", "move", 0, 7), id="move"),
    pytest.param("key:space", ActionSpec("key:space", "key", keys=("space",)), id="key"),
    pytest.param("key:ctrl+shift+F1", ActionSpec("key:ctrl+shift+F1", "key", keys=("ctrl", "shift", "F1")),
                 id="combo"),
])
def test_action_texts(text, expected) -> None:
    assert parse_action(text) == expected


@pytest.mark.parametrize("text", [
    pytest.param("clik:1,2", id="unknown-kind"),
    pytest.param("click:1", id="one-coordinate"),
    pytest.param("click:-1,2", id="negative"),
    pytest.param("click:a,b", id="not-numbers"),
    pytest.param("key:", id="no-key"),
    pytest.param("key:ctrl+", id="dangling-plus"),
    pytest.param("noop:1", id="noop-with-args"),
])
def test_bad_action_texts_name_the_forms(text) -> None:
    with pytest.raises(ValueError) as caught:
        parse_action(text)
    assert str(caught.value) == f"{text!r}: {ACTION_ERROR}"


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("pixel:5,6,#00ff80,30,1.5", TriggerSpec("pixel:5,6,#00ff80,30,1.5", "pixel", 1.5, 5, 6,
                                                          (0, 255, 128), 30), id="pixel"),
    pytest.param("template:/tmp/a,b.png,0.9,-1", TriggerSpec("template:/tmp/a,b.png,0.9,-1", "template", -1.0,
                                                             path="/tmp/a,b.png", threshold=0.9), id="template"),
])
def test_trigger_texts(text, expected) -> None:
    assert parse_trigger(text) == expected


@pytest.mark.parametrize("text", [
    pytest.param("pixel:5,6,green,30,1", id="named-colour"),
    pytest.param("pixel:5,6,#00ff80,30", id="no-reward"),
    pytest.param("pixel:5,6,#00ff80,30,nan", id="nan-reward"),
    pytest.param("template:x.png,1.5,1", id="threshold-above-1"),
    pytest.param("template:,0.9,1", id="no-path"),
    pytest.param("colour:1,2", id="unknown-kind"),
])
def test_bad_trigger_texts_name_the_forms(text) -> None:
    with pytest.raises(ValueError) as caught:
        parse_trigger(text)
    assert str(caught.value) == f"{text!r}: {TRIGGER_ERROR}"


@pytest.mark.parametrize(("options", "message"), [
    pytest.param({"actions": ("noop", "clik:1,2")}, f"screen.actions[1] = 'clik:1,2': {ACTION_ERROR}", id="action"),
    pytest.param({"actions": ()}, "screen.actions = []: give at least one action (e.g. 'noop')", id="no-actions"),
    pytest.param({"reset_actions": ("key:",)}, f"screen.reset_actions[0] = 'key:': {ACTION_ERROR}", id="reset"),
    pytest.param({"end_when": ("pixel:1,2,red,3,1",)}, f"screen.end_when[0] = 'pixel:1,2,red,3,1': {TRIGGER_ERROR}",
                 id="end-when"),
    pytest.param({"reward_when": ("x",)}, f"screen.reward_when[0] = 'x': {TRIGGER_ERROR}", id="reward-when"),
    pytest.param({"region": (0, 0, 5, 0)}, "screen.region = [0, 0, 5, 0]: must be [x, y, width, height] with x, y "
                 ">= 0 and width, height > 0; width = height = 0 means the whole screen", id="region"),
    pytest.param({"screen_size": (32, 768)}, "screen.screen_size = [32, 768]: must be [width, height] between "
                 "[64, 64] and [7680, 4320]", id="screen-size"),
])
def test_screen_config_errors(options, message) -> None:
    with pytest.raises(ValueError) as caught:
        ScreenConfig(**options)
    assert str(caught.value) == message


@pytest.mark.parametrize("cls", [ScreenConfig, XboardConfig, ClashConfig])
def test_config_fields_have_one_line_docstrings(cls) -> None:
    docs = field_docs(cls)
    assert [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)] == []
    cls(replay_dir="x") if cls is ClashConfig else cls()


# -- detectors --------------------------------------------------------------------------------------------------

def test_colour_measurements_hand_worked() -> None:
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[:2, :2] = (200, 100, 0)
    frame[:2, 2:] = (100, 100, 100)
    assert mean_colour(frame, (0, 0, 4, 2)) == (150, 100, 50)
    assert colour_fraction(frame, (0, 0, 4, 4), (200, 100, 0), 10) == 0.25
    assert colour_fraction(frame, (0, 0, 4, 4), (0, 0, 0), 100) == 0.75  # (100,100,100) is exactly 100 away
    assert saturation(frame, (2, 0, 4, 2)) == 0.0 and saturation(frame, (0, 0, 2, 2)) == 255.0


@pytest.mark.parametrize(("probe", "expected"), [
    pytest.param(PixelProbe(1, 1, (250, 0, 0), 10), True, id="match"),
    pytest.param(PixelProbe(1, 1, (230, 0, 0), 10), False, id="too-far"),
    pytest.param(PixelProbe(1, 1, (230, 0, 0), 30), True, id="within-tolerance"),
    pytest.param(PixelProbe(2, 2, (125, 0, 0), 5, radius=1), False, id="patch-mean-not-close"),
    pytest.param(PixelProbe(3, 3, (250, 0, 0), 5, radius=1), False, id="patch-at-corner"),
    pytest.param(PixelProbe(1, 1, (250, 0, 0), 5, radius=1), True, id="patch-inside"),
])
def test_pixel_probe(probe, expected) -> None:
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[:3, :3] = (250, 0, 0)
    assert probe(frame) is expected


def test_pixel_probe_outside_the_frame() -> None:
    with pytest.raises(EnvError) as caught:
        PixelProbe(9, 1, (0, 0, 0))(np.zeros((4, 4, 3), np.uint8))
    assert str(caught.value) == "pixel probe at (9, 1) lies outside the 4x4 frame; use region coordinates"


def test_template_match_finds_the_template_and_only_inside_its_box() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    template = frame[20:30, 40:55].copy()
    assert TemplateMatch(template, 0.95)(frame)
    assert TemplateMatch(template, 0.95).score(frame) == pytest.approx(1.0)
    assert not TemplateMatch(template, 0.95, box=(0, 0, 40, 60))(frame)
    assert not TemplateMatch(template, 0.95)(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))


def test_template_trigger_loads_its_png(tmp_path) -> None:
    template = np.zeros((5, 6, 3), np.uint8)
    template[1:3, 2:5] = (10, 200, 30)
    cv2.imwrite(str(tmp_path / "t.png"), cv2.cvtColor(template, cv2.COLOR_RGB2BGR))
    trigger = build_trigger(parse_trigger(f"template:{tmp_path}/t.png,0.9,2"), ends_episode=True)
    assert (trigger.reward, trigger.ends_episode, trigger.name) == (2.0, True, f"template:{tmp_path}/t.png,0.9,2")
    assert np.array_equal(trigger.detector.template, template)
    with pytest.raises(EnvError) as caught:
        build_trigger(parse_trigger(f"template:{tmp_path}/missing.png,0.9,2"), ends_episode=False)
    assert str(caught.value) == f"cannot read image '{tmp_path}/missing.png'; give the path of a PNG file"


def test_pixel_trigger() -> None:
    trigger = build_trigger(parse_trigger("pixel:0,0,#ff0000,5,-1"), ends_episode=False)
    assert trigger == Trigger(PixelProbe(0, 0, (255, 0, 0), 5), -1.0, False, "pixel:0,0,#ff0000,5,-1")


# -- pacing -----------------------------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.t, self.slept = 0.0, []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.t += seconds


def test_pacer_holds_the_rate_and_restarts_when_far_behind() -> None:
    clock = FakeClock()
    pacer = Pacer(4.0, clock.now, clock.sleep)
    pacer.wait()                      # slot 0.25
    clock.t += 0.1                    # the step took 0.1 s
    pacer.wait()                      # slot 0.5: sleeps 0.15
    clock.t += 0.3                    # overran into the next slot (0.8 > 0.75) but by less than a period
    pacer.wait()                      # slot 0.75 is past: no sleep, keeps the schedule
    pacer.wait()                      # slot 1.0: sleeps 0.2
    clock.t += 1.0                    # a long stall: 2.0 is past the 1.25 slot by more than a period
    pacer.wait()                      # restarts the schedule at 2.0
    pacer.wait()                      # slot 2.25
    assert clock.slept == [0.25, 0.15, 0.2, 0.25]
    assert clock.t == pytest.approx(2.25) and pacer.late_steps == 1


def test_pacer_rejects_a_zero_rate() -> None:
    with pytest.raises(ValueError, match=r"decision rate 0 Hz: must be > 0"):
        Pacer(0)


# -- xboard board reading ---------------------------------------------------------------------------------------

def board_image(board: chess.Board, square_px: int = 40) -> np.ndarray:
    """Return a flat board like xboard's (a1 dark, bottom left) with discs for pieces: white with a black ring,
    black with a white highlight."""
    image = np.zeros((8 * square_px, 8 * square_px, 3), np.uint8)
    for square in chess.SQUARES:
        row, col = 7 - chess.square_rank(square), chess.square_file(square)
        top, left = row * square_px, col * square_px
        dark = (chess.square_rank(square) + chess.square_file(square)) % 2 == 0
        image[top:top + square_px, left:left + square_px] = DARK_RGB if dark else LIGHT_RGB
        piece = board.piece_at(square)
        if piece is not None:
            centre, radius = (left + square_px // 2, top + square_px // 2), square_px // 3
            fill, line = ((255, 255, 204), (0, 0, 0)) if piece.color == chess.WHITE else ((0, 0, 0), (255, 255, 255))
            cv2.circle(image, centre, radius, fill, -1)
            cv2.circle(image, centre, radius, line, 2 if piece.color == chess.WHITE else 1)
    return image


@pytest.mark.parametrize("fen", [
    pytest.param(chess.STARTING_FEN, id="start"),
    pytest.param("r1bqkb1r/pppp1ppp/2n2n2/4p2Q/2B1P3/8/PPPP1PPP/RNB1K1NR w KQkq - 4 4", id="italian"),
    pytest.param("8/8/8/4k3/8/8/8/4K3 w - - 0 1", id="kings"),
])
def test_occupancy_read_from_a_flat_board_matches_the_position(fen) -> None:
    board = chess.Board(fen)
    assert np.array_equal(read_occupancy(board_image(board)), occupancy_of(board))


def test_occupancy_codes_by_square() -> None:
    occupancy = occupancy_of(chess.Board())
    assert (occupancy[chess.A1], occupancy[chess.E4], occupancy[chess.H8]) == (WHITE, EMPTY, BLACK)


def test_board_is_found_on_a_larger_screen() -> None:
    screen = np.full((300, 500, 3), 220, np.uint8)
    screen[40:40 + 200, 110:110 + 200] = board_image(chess.Board(), 25)
    region = find_board(screen)
    assert tuple(region) == (110, 40, 200, 200)
    assert find_board(np.full((300, 500, 3), 220, np.uint8)) is None


@pytest.mark.parametrize(("cell", "square"), [
    pytest.param(0, chess.A8, id="top-left"),
    pytest.param(7, chess.H8, id="top-right"),
    pytest.param(56, chess.A1, id="bottom-left"),
    pytest.param(52, chess.E2, id="e2"),
])
def test_screen_cells_map_to_squares(cell, square) -> None:
    assert cell_square(cell) == square and square_cell(square) == cell


def test_xboard_command_line_has_the_flags_the_reader_relies_on() -> None:
    argv = xboard_argv(XboardConfig(skill_level=3, depth=2), {"xboard": "/usr/games/xboard",
                                                               "stockfish": "/usr/games/stockfish"})
    pairs = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert argv[:2] == ["/usr/games/xboard", "-fUCI"]
    assert {k: pairs[k] for k in ("-fcp", "-fd", "-firstOptions", "-depth", "-useBoardTexture",
                                  "-showTargetSquares", "-alwaysPromoteToQueen", "-clockMode", "-startupMessage")} \
        == {"-fcp": "stockfish", "-fd": "/usr/games", "-firstOptions": "Skill Level=3", "-depth": "2",
            "-useBoardTexture": "false", "-showTargetSquares": "true", "-alwaysPromoteToQueen": "true",
            "-clockMode": "false", "-startupMessage": ""}


# -- registration -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("env_id", "entry_point", "options"), [
    pytest.param("screen", "envs.screen.env:ScreenEnv", "screen", id="screen"),
    pytest.param("xboard-chess", "envs.screen.xboard:XboardChessEnv", "xboard", id="xboard"),
    pytest.param("clash-royale", "envs.screen.clash:ClashRoyaleEnv", "clash", id="clash"),
])
def test_screen_ids_are_registered(env_id, entry_point, options) -> None:
    spec = envs.spec(env_id)
    assert (spec.entry_point, spec.options, spec.needs_display) == (entry_point, options, True)


def test_registration_module_imports_only_the_registry() -> None:
    source = Path(envs.screen.__file__).read_text()
    imported = {n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import) for a in n.names}
    assert imported == {"envs.registry"}
