"""Metrics store: JSONL rows with step and time, non-finite values as null, torn lines skipped, listeners told of
every row with its end offset."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

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


def test_a_full_disk_loses_rows_but_never_raises_and_writing_resumes(tmp_path, caplog) -> None:
    writer = MetricsWriter(tmp_path, tensorboard=False)
    seen = []
    writer.subscribe(lambda step, row, offset: seen.append((step, offset)))
    writer.write(1, {"a": 1.0})
    good = os.dup(writer._fd)
    full = os.open("/dev/full", os.O_WRONLY)  # the kernel's "no space left on device" for every write
    os.dup2(full, writer._fd)
    with caplog.at_level(logging.WARNING, logger="app.metrics"):
        writer.write(2, {"a": 2.0})
        writer.write(3, {"a": 3.0})
        assert writer.write_errors == 2 and caplog.text.count("cannot append") == 1  # told once per streak
        os.dup2(good, writer._fd)
        writer.write(4, {"a": 4.0})
    writer.close()
    os.close(good), os.close(full)
    assert "is written again (2 rows lost in all)" in caplog.text
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 4]
    assert [s for s, _ in seen] == [1, 2, 3, 4]  # the curves still saw every row
    assert seen[1][1] == seen[2][1] == seen[0][1]  # a lost row does not move the offset the curves save
    assert seen[-1][1] == (tmp_path / "metrics.jsonl").stat().st_size


def test_a_stalled_tensorboard_writer_never_blocks_a_metrics_write(tmp_path, caplog) -> None:
    writer = MetricsWriter(tmp_path, tensorboard=True)
    release = threading.Event()

    class Stalled:  # tensorboardX after its writer thread died: add_scalar blocks for good
        def add_scalar(self, *args, **kwargs) -> None:
            release.wait()

        def close(self) -> None:
            pass

    writer.tensorboard._writer = Stalled()
    rows = writer.tensorboard.QUEUE_ROWS + 50
    began = time.monotonic()
    for step in range(rows):
        writer.write(step, {"a": 1.0})
    assert time.monotonic() - began < 30  # never waited for TensorBoard
    assert writer.tensorboard.dropped >= 49 and "TensorBoard output has stalled" in caplog.text
    assert len(list(read_metrics(tmp_path / "metrics.jsonl"))) == rows
    writer.close(timeout_s=0.5)  # gives up on the stalled writer instead of hanging the shutdown
    release.set()
