"""Metrics store: JSONL rows with step and time, non-finite values as null, torn lines skipped, listeners told of
every row with its end offset."""

from __future__ import annotations

import json

from app.metrics import MetricsWriter, read_metrics, read_metrics_from


def test_rows_are_appended_and_read_back(tmp_path) -> None:
    writer = MetricsWriter(tmp_path, tensorboard=True)
    writer.write(10, {"episode/score": 1.5, "fps/env": 30})
    writer.write(20, {"loss/image": float("nan")})
    writer.close()
    rows = list(read_metrics(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [10, 20]
    assert rows[0]["episode/score"] == 1.5 and rows[0]["fps/env"] == 30.0
    assert rows[1]["loss/image"] is None
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_torn_last_line_is_skipped_and_appending_resumes(tmp_path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 1, "time": 0, "a": 1.0}) + "\n" + '{"step": 2, "ti')
    rows = list(read_metrics(path))
    assert rows == [{"step": 1, "time": 0, "a": 1.0}]
    writer = MetricsWriter(tmp_path, tensorboard=False)
    writer.write(3, {"a": 2.0})
    writer.close()
    assert [r["step"] for r in read_metrics(path)] == [1, 3]


def test_missing_file_reads_as_empty(tmp_path) -> None:
    assert list(read_metrics(tmp_path / "none.jsonl")) == []


def test_listeners_see_every_row_in_file_order_with_its_end_offset(tmp_path, caplog) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 1, "time": 0, "a": 1.0}) + "\n" + '{"step": 2, "ti')  # a kill -9 mid-row
    writer = MetricsWriter(tmp_path, tensorboard=False)
    seen = []
    writer.subscribe(lambda step, row, offset: seen.append((step, row["a"], offset)))
    writer.subscribe(lambda step, row, offset: 1 / 0)  # a failing listener loses no row and stops nothing
    writer.write(3, {"a": 2.0})
    writer.write(4, {"a": float("inf")})
    writer.close()
    size = path.stat().st_size
    assert [(s, a) for s, a, _ in seen] == [(3, 2.0), (4, None)] and seen[-1][2] == writer.offset == size
    assert "a metrics listener failed" in caplog.text
    # Reading on from a listener's offset gives exactly the rows after it; the torn line is skipped.
    assert [(r["step"], end) for r, end in read_metrics_from(path, seen[0][2])] == [(4, size)]
    assert [r["step"] for r, _ in read_metrics_from(path)] == [1, 3, 4]
    with path.open("a") as fh:
        fh.write('{"step": 5, "time"')  # torn again: not a row yet, and the offset stops before it
    assert [end for _, end in read_metrics_from(path, seen[0][2])] == [size]
