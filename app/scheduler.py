"""Periodic jobs, declared in one place from config and run by APScheduler.

Each job has an explicit id, `max_instances=1` and `coalesce=True`, and is a thin call into a function
that has its own tests. Eval and rollback jobs join here with their issues.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from apscheduler.schedulers.background import BackgroundScheduler

from app.settings import RunConfig, SchedulerConfig

__all__ = ["Job", "build_scheduler", "declare_jobs"]

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 60.0
"""How often recordings beyond their size budget are deleted (a 4500 kbps stream writes ~34 MB a minute)."""


@dataclass(frozen=True)
class Job:
    id: str
    func: Callable[[], None]
    interval_s: float


def declare_jobs(run: RunConfig, sched: SchedulerConfig, *, save_state: Callable[[], None],
                 report_status: Callable[[], None], checkpoint: Callable[[], None],
                 prune_disk: Callable[[], None]) -> list[Job]:
    """Return every periodic job of the app with its interval from config."""
    return [
        Job("save_state", save_state, sched.save_interval_s),
        Job("report_status", report_status, run.status_interval_s),
        Job("checkpoint", checkpoint, sched.checkpoint_interval_min * 60),
        Job("prune_disk", prune_disk, PRUNE_INTERVAL_S),
    ]


def build_scheduler(jobs: list[Job]) -> BackgroundScheduler:
    """Return a (not yet started) scheduler holding `jobs`."""
    scheduler = BackgroundScheduler(timezone="UTC")
    for job in jobs:
        scheduler.add_job(job.func, "interval", seconds=job.interval_s, id=job.id, name=job.id,
                          max_instances=1, coalesce=True, misfire_grace_time=max(1, int(job.interval_s)))
        log.debug("job %s every %.1fs", job.id, job.interval_s)
    return scheduler
