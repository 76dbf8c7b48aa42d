"""The sample overlay PNG: a real Crafter frame, every panel filled, curves and results read from a run dir."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.metrics import MetricsWriter
from app.sample_overlay import _logdir_curves, _logdir_results, render_sample
from app.storage import add_episode, ensure_run, open_database, upgrade
from overlays import Layout, Result


def test_render_sample_writes_a_small_png_of_the_layout_size(tmp_path: Path) -> None:
    out = tmp_path / "frame.png"
    render_sample(out)
    image = cv2.imread(str(out))
    assert image.shape == (720, 1280, 3)
    assert out.stat().st_size < 300_000
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind
    layout = Layout()
    for box in (layout.game, layout.dream, layout.curves, layout.results, layout.poll, layout.chat):
        assert image[box.y: box.y1, box.x: box.x1].std() > 10


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    writer = MetricsWriter(tmp_path / "metrics", tensorboard=False)
    for step in range(1, 6):
        writer.write(step * 100, {"episode/score": float(step), "loss/image": 10.0 / step})
    writer.write(600, {"loss/dyn": float("nan")})
    writer.close()
    engine, sessions = open_database(tmp_path / "dreamstream.db")
    upgrade(engine)
    with sessions.begin() as session:
        run_id = ensure_run(session, "r", "chess", "dreamer").id
        for i, result in enumerate(["win", "loss", "draw"] * 4):
            add_episode(session, run_id, env_id="chess", score=float(i), length=10, env_step=i, result=result)
    engine.dispose()
    return tmp_path


def test_curves_come_from_the_run_metrics(logdir: Path) -> None:
    curves = _logdir_curves(logdir)
    assert [c.label for c in curves] == ["episode score", "image loss", "dynamics loss", "eval score"]
    assert curves[0].steps.tolist() == [100, 200, 300, 400, 500] and curves[0].values.tolist() == [1, 2, 3, 4, 5]
    assert curves[1].values.tolist() == [10.0, 5.0, 10 / 3, 2.5, 2.0]
    assert len(curves[2].values) == len(curves[3].values) == 0  # a NaN row is stored as null and skipped


def test_results_are_the_last_ten_episodes_oldest_first(logdir: Path) -> None:
    results = _logdir_results(logdir)
    assert results == tuple(Result(outcome=o, score=float(i)) for i, o in
                            list(enumerate(["win", "loss", "draw"] * 4))[2:])


def test_a_run_dir_without_data_falls_back_to_samples(tmp_path: Path, caplog) -> None:
    assert _logdir_curves(tmp_path) is None and _logdir_results(tmp_path) is None
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "metrics.jsonl").write_text(json.dumps({"step": 1, "fps/env": 30.0}) + "\n")
    assert _logdir_curves(tmp_path) is None
    sqlite3.connect(tmp_path / "dreamstream.db").close()  # a database without the episodes table
    assert _logdir_results(tmp_path) is None
    assert caplog.messages == [f"cannot read episodes from {tmp_path / 'dreamstream.db'} (OperationalError); "
                               "showing sample results"]


def test_render_sample_reads_a_run_dir(logdir: Path) -> None:
    render_sample(logdir / "frame.png", width=640, height=360, logdir=logdir)
    image = cv2.cvtColor(cv2.imread(str(logdir / "frame.png")), cv2.COLOR_BGR2RGB)
    assert image.shape == (360, 640, 3)
    results = Layout(width=640, height=360).results
    panel = image[results.y: results.y1, results.x: results.x1]
    assert (np.abs(panel.astype(int) - (56, 214, 150)).sum(-1) < 30).sum() > 50  # green W chips from the database
