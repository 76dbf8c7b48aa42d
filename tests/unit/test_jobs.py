"""Periodic jobs: the declared set, and the disk job that keeps recordings within their budget."""

from __future__ import annotations

import os
from types import SimpleNamespace

from app.config import load_blocks, resolve
from app.rundir import RunDir
from app.runner import Runner
from app.scheduler import build_scheduler, declare_jobs
from stream import prune_recordings


def write(path, mb: float, age_s: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * int(mb * 1_000_000))
    t = 1_700_000_000 - age_s
    os.utime(path, (t, t))


def test_prune_deletes_the_oldest_beyond_the_budget_but_never_the_newest(tmp_path) -> None:
    for i, age in enumerate((300, 200, 100)):
        write(tmp_path / f"stream-{i}.flv", 1.0, age)
    write(tmp_path / "notes.txt", 5.0, 400)  # not a recording: never touched
    deleted = prune_recordings(tmp_path, keep_mb=2)
    assert [p.name for p in deleted] == ["stream-0.flv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "stream-1.flv", "stream-2.flv"]
    write(tmp_path / "stream-3.flv", 9.0, 0)  # one file over budget on its own: it is the newest, it stays
    prune_recordings(tmp_path, keep_mb=2)
    assert sorted(p.name for p in tmp_path.glob("*.flv")) == ["stream-3.flv"]
    assert prune_recordings(tmp_path, keep_mb=0) == []  # 0 keeps everything


def test_a_recording_that_vanishes_during_a_prune_is_no_error(tmp_path) -> None:
    """The stream's pacer and the app's minute job prune the same folder; a dangling link is a file that was
    listed and then deleted by the other one."""
    write(tmp_path / "stream-1.flv", 1.0, 200)
    write(tmp_path / "stream-2.flv", 2.0, 100)
    (tmp_path / "stream-0.flv").symlink_to(tmp_path / "deleted-meanwhile.flv")
    assert [p.name for p in prune_recordings(tmp_path, keep_mb=2)] == ["stream-1.flv"]


def test_disk_job_covers_our_segments_and_the_local_servers_recordings(tmp_path) -> None:
    cfg = resolve(["tiny"], [("stream.keep_recordings_mb", 1)], environ={}, blocks=load_blocks())
    rundir = RunDir(tmp_path / "run")
    write(rundir.recordings_dir / "stream-a.flv", 1.0, 100)
    write(rundir.recordings_dir / "stream-b.flv", 1.0, 50)
    write(rundir.rtmp_dir / "rec" / "dreamstream-1.flv", 1.0, 100)
    write(rundir.rtmp_dir / "rec" / "dreamstream-2.flv", 1.0, 50)
    checked, pruned = [], []
    runner = SimpleNamespace(cfg=cfg, rundir=rundir, check_disk=lambda: checked.append(True),
                             prune_history=lambda: pruned.append(True), _history_pruned_at=-float("inf"))
    Runner.prune_disk(runner)
    assert checked == [True] and pruned == [True]  # and the job measures the free space, prunes the history
    Runner.prune_disk(runner)
    assert checked == [True, True] and pruned == [True]  # the history hourly, not every minute
    assert [p.name for p in rundir.recordings_dir.glob("*.flv")] == ["stream-b.flv"]
    assert [p.name for p in (rundir.rtmp_dir / "rec").glob("*.flv")] == ["dreamstream-2.flv"]


def test_every_job_is_declared_once_and_never_overlaps_itself() -> None:
    cfg = resolve(["tiny"], environ={}, blocks=load_blocks())
    noop = lambda: None
    jobs = declare_jobs(cfg.run, cfg.scheduler, save_state=noop, report_status=noop, checkpoint=noop,
                        prune_disk=noop)
    assert [j.id for j in jobs] == ["save_state", "report_status", "checkpoint", "prune_disk"]
    scheduler = build_scheduler(jobs)
    for job in scheduler.get_jobs():
        assert job.max_instances == 1 and job.coalesce


def test_a_wall_clock_step_back_is_seen_and_the_jobs_run_at_once(monkeypatch) -> None:
    """APScheduler 3 times jobs by the wall clock: after a step back of an hour every periodic job (state saves,
    checkpoints, pruning) waited that hour too, silently."""
    import threading
    import time

    import app.scheduler
    from app.scheduler import ClockWatch, Job, run_jobs_now

    watch = ClockWatch()
    assert watch.stepped_back() == 0.0
    real = time.time
    monkeypatch.setattr(app.scheduler.time, "time", lambda: real() - 3600)  # NTP stepped the clock back an hour
    assert 3590 < watch.stepped_back() < 3610
    assert watch.stepped_back() == 0.0  # told once
    monkeypatch.setattr(app.scheduler.time, "time", lambda: real() - 3598)  # a small slew forward: no jump
    assert watch.stepped_back() == 0.0
    monkeypatch.undo()

    ran = threading.Event()
    scheduler = build_scheduler([Job("hourly", ran.set, 3600.0)])
    scheduler.start()
    try:
        assert not ran.wait(0.5)  # first due in an hour
        run_jobs_now(scheduler)
        assert ran.wait(30)
        (job,) = scheduler.get_jobs()
        assert 3500 < (job.next_run_time.timestamp() - time.time()) <= 3600  # the interval goes on from now
    finally:
        scheduler.shutdown(wait=True)
