"""Periodic jobs, declared in one place from config and run by APScheduler.

Each job has an explicit id, `max_instances=1` and `coalesce=True`, and is a thin call into a function
that has its own tests. Eval and rollback jobs join here with their issues.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from app.settings import RunConfig, SchedulerConfig

__all__ = ["ClockWatch", "Job", "build_scheduler", "declare_jobs", "run_jobs_now"]

log = logging.getLogger(__name__)

CLOCK_STEP_S = 5.0
"""A step of the wall clock against the monotonic clock larger than this counts as a jump (NTP slews less)."""
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


class ClockWatch:
    """Tells when the wall clock stepped back. APScheduler 3 times its jobs by the wall clock: after a step back
    of an hour (an NTP correction, a VM resumed from a snapshot) every periodic job (state saves, checkpoints,
    pruning) would wait that hour too, silently."""

    def __init__(self) -> None:
        self._offset = time.time() - time.monotonic()

    def stepped_back(self) -> float:
        """Return how many seconds the wall clock went back since the last call (0.0 when it did not jump)."""
        offset = time.time() - time.monotonic()
        step, self._offset = self._offset - offset, offset
        return step if step > CLOCK_STEP_S else 0.0


def run_jobs_now(scheduler: BackgroundScheduler) -> None:
    """Make every job due now (their intervals go on from there); after the wall clock went back."""
    now = datetime.now(UTC)
    for job in scheduler.get_jobs():
        job.modify(next_run_time=now)
    scheduler.wakeup()

