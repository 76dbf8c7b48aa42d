"""Whole-run learning curves: bounded, exact bin means, saved and resumed, rebuilt from the metrics."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from app.curves import CURVES, RunCurve, RunCurves, world_model_loss
from app.metrics import MetricsWriter


def test_a_curve_keeps_the_whole_run_in_bounded_points_with_exact_bin_means() -> None:
    curve = RunCurve(100)
    for i in range(10_000):
        curve.add(i, 2.0 * i)
    steps, values = curve.arrays()
    assert len(curve.points) < 100 and curve.per_point == 128 and curve.count == 10_000
    assert steps[0] == pytest.approx(63.5) and steps[-1] < 10_000  # the first bin is steps 0..127
    np.testing.assert_allclose(values, 2 * steps)  # each point is the mean of its bin
    # Nothing is lost: the points (equal weights) and the pending values add up to every value added.
    total = sum(v for _, v in curve.points) * curve.per_point + sum(v for _, v in curve.pending)
    assert total == pytest.approx(sum(2.0 * i for i in range(10_000)))
    curve.add(10_000, float("nan"))  # a non-finite value is not a point
    assert curve.count == 10_000


def test_a_short_curve_keeps_every_value() -> None:
    curve = RunCurve(100)
    for i in range(5):
        curve.add(10 * i, -i)
    steps, values = curve.arrays()
    assert steps.tolist() == [0, 10, 20, 30, 40] and values.tolist() == [0, -1, -2, -3, -4]


def test_world_model_loss_needs_every_term() -> None:
    row = {"loss/image": 1.0, "loss/reward": 0.5, "loss/cont": 0.25, "loss/dyn": 2.0, "loss/rep": 3.0}
    assert world_model_loss(row) == pytest.approx(4.05)
    assert world_model_loss({"loss/image": 1.0}) is None


def test_curves_are_saved_resumed_and_rebuilt_from_the_metrics(tmp_path) -> None:
    writer = MetricsWriter(tmp_path / "metrics", tensorboard=False)
    live = RunCurves(64)
    for step in range(1, 1001):
        row = {"episode/score": float(step % 7)}
        if step % 100 == 0:
            row["eval/elo"] = 100.0 + step
        writer.write(step, row)
        live.add_row(step, row)
    writer.close()
    live.offset = writer.offset  # the curves hold every row written
    saved = tmp_path / "metrics" / "curves.json"
    live.save(saved)
    resumed = RunCurves(64)
    resumed.load(saved, tmp_path / "metrics" / "metrics.jsonl")
    rebuilt = RunCurves(64)
    rebuilt.load(tmp_path / "missing.json", tmp_path / "metrics" / "metrics.jsonl")
    for other in (resumed, rebuilt):
        assert other.as_lists() == live.as_lists()
    assert live.as_lists()["Elo"]["values"] == [100.0 + s for s in range(100, 1001, 100)]
    assert live.as_lists()["world-model loss"]["count"] == 0 and set(live.as_lists()) == set(CURVES)


def test_a_damaged_curves_file_is_rebuilt_from_the_metrics(tmp_path, caplog) -> None:
    writer = MetricsWriter(tmp_path, tensorboard=False)
    writer.write(5, {"eval/score": 1.5})
    writer.close()
    (tmp_path / "curves.json").write_text('{"curves": {"Elo": {"per_point": 3, "points": [], "pending": []}}}')
    curves = RunCurves(64)
    curves.load(tmp_path / "curves.json", tmp_path / "metrics.jsonl")
    assert "unreadable" in caplog.text and curves.as_lists()["eval score"]["values"] == [1.5]


@pytest.mark.parametrize("n", [900, 901, 1000])
def test_a_curve_saved_with_more_points_is_merged_to_fit_and_keeps_every_value(n) -> None:
    big = RunCurve(1000)
    values = [float(i % 13) ** 2 + (1000.0 if i == n - 1 else 0.0) for i in range(n)]
    for i, v in enumerate(values):
        big.add(i, v)
    small = RunCurve.from_dict(json.loads(json.dumps(big.to_dict())), 100)
    assert len(small.points) < 100 and len(small.pending) < small.per_point and small.count == n
    total = sum(v for _, v in small.points) * small.per_point + sum(v for _, v in small.pending)
    assert total == pytest.approx(sum(values))  # an odd last point is not counted twice
    again = RunCurve(100)
    for i, v in enumerate(values):
        again.add(i, v)
    assert again.per_point == small.per_point and len(again.points) == len(small.points)


def test_a_saved_curve_with_non_finite_values_is_refused() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        RunCurve.from_dict({"per_point": 1, "points": [[0, float("nan")]], "pending": []}, 10)
    with pytest.raises(ValueError, match="object"):
        RunCurve.from_dict([], 10)


def test_rows_written_after_the_last_save_are_caught_up_at_load(tmp_path, caplog) -> None:
    """A kill -9 between two saves loses no point: the rows after the saved offset are read at the next start."""
    caplog.set_level(logging.INFO, logger="app.curves")
    writer = MetricsWriter(tmp_path, tensorboard=False)
    live = RunCurves(64)
    writer.subscribe(lambda step, row, offset: (live.add_row(step, row), setattr(live, "offset", offset)))
    for step in range(1, 301):
        writer.write(step, {"episode/score": float(step % 5), "fps/env": 30.0})
        if step == 200:
            live.save(tmp_path / "curves.json", state_step=200)  # the last save before the kill
    writer.close()
    resumed = RunCurves(64)
    resumed.load(tmp_path / "curves.json", tmp_path / "metrics.jsonl")
    assert resumed.as_lists() == live.as_lists() and resumed.offset == live.offset
    assert resumed.saved_state_step == 200 < resumed.last_step()
    assert "took 100 metrics rows written after their last save" in caplog.text
    again = RunCurves(64)  # saved after the catch-up: nothing is taken twice
    resumed.save(tmp_path / "curves.json")
    again.load(tmp_path / "curves.json", tmp_path / "metrics.jsonl")
    assert again.as_lists() == live.as_lists()
    assert again.as_lists()["episode score"]["count"] == 300


def test_a_metrics_file_shorter_than_the_curves_read_is_rebuilt_and_an_old_curves_file_is_kept(tmp_path,
                                                                                              caplog) -> None:
    writer = MetricsWriter(tmp_path, tensorboard=False)
    writer.write(1, {"eval/score": 1.0})
    writer.write(2, {"eval/score": 2.0})
    writer.close()
    saved = RunCurves(64)
    saved.add_row(9, {"eval/score": 9.0})
    saved.offset = 10_000  # beyond the file: metrics.jsonl was replaced
    saved.save(tmp_path / "curves.json")
    curves = RunCurves(64)
    curves.load(tmp_path / "curves.json", tmp_path / "metrics.jsonl")
    assert "which now has" in caplog.text and curves.as_lists()["eval score"]["values"] == [1.0, 2.0]
    # A curves file from before offsets were saved: taken as it is, and reading goes on from the end.
    data = json.loads(saved.to_json())
    del data["metrics_offset"], data["state_env_step"]
    (tmp_path / "curves.json").write_text(json.dumps(data))
    old = RunCurves(64)
    old.load(tmp_path / "curves.json", tmp_path / "metrics.jsonl")
    assert old.as_lists()["eval score"]["values"] == [9.0]
    assert old.saved_state_step == 9  # it was saved with state.json: its last step was that state's
    assert old.offset == (tmp_path / "metrics.jsonl").stat().st_size
