"""Run directory: atomic writes, the one-process lock, state round trip and damaged state."""

from __future__ import annotations

import json
import os
import re

import pytest

from app.errors import RunDirError
from app.rundir import RunDir, atomic_write_text


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path) -> None:
    path = tmp_path / "sub" / "state.json"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_failed_write_keeps_the_old_content(tmp_path, monkeypatch) -> None:
    path = tmp_path / "state.json"
    atomic_write_text(path, "good")

    def boom(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "bad")
    assert path.read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_second_owner_is_refused_with_the_holders_pid(tmp_path) -> None:
    first, second = RunDir(tmp_path), RunDir(tmp_path)
    first.create()
    first.lock()
    with pytest.raises(RunDirError, match=re.escape(f"run dir {tmp_path} is in use by pid {os.getpid()}")):
        second.lock()
    first.unlock()
    second.lock()  # free again once released
    second.unlock()


def test_state_round_trip_and_new_run(tmp_path) -> None:
    rundir = RunDir(tmp_path / "r")
    assert rundir.is_new and rundir.read_state() == {}
    rundir.create()
    rundir.write_state({"env_step": 12})
    assert rundir.read_state() == {"env_step": 12}


@pytest.mark.parametrize("content", [pytest.param("{not json", id="torn"), pytest.param("[1]", id="not-object")])
def test_damaged_state_is_reported_not_trusted(tmp_path, content) -> None:
    rundir = RunDir(tmp_path)
    rundir.state_path.write_text(content)
    with pytest.raises(RunDirError, match="state.json"):
        rundir.read_state()


def test_unwritable_location_is_a_clear_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunDirError, match="cannot create run dir .*pass a writable --logdir"):
        RunDir(blocker / "run").create()


def test_state_is_valid_json_on_disk(tmp_path) -> None:
    rundir = RunDir(tmp_path)
    rundir.write_state({"a": 1})
    assert json.loads(rundir.state_path.read_text()) == {"a": 1}


@pytest.mark.parametrize("bad", ["x", -1, 1.5, True, None])
def test_damaged_counters_are_a_clear_error(bad) -> None:
    from app.runner import Counters

    assert Counters.from_state({"env_step": 5}).env_step == 5
    with pytest.raises(RunDirError, match=r"state.json: episodes = .* must be a whole number"):
        Counters.from_state({"episodes": bad})


def test_runs_sharing_one_database_get_rows_of_their_own(tmp_path) -> None:
    a, b = RunDir(tmp_path / "a" / "default"), RunDir(tmp_path / "b" / "default")
    assert a.database_run_name("dreamstream.db") == b.database_run_name("dreamstream.db") == "default"  # own files
    shared = str(tmp_path / "all-runs.db")
    assert a.database_run_name(shared) != b.database_run_name(shared)
    assert a.database_run_name(shared) == str((tmp_path / "a" / "default").resolve())
