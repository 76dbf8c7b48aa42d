"""Checkpoints with orbax: the whole train state plus counters, written atomically, keep-N plus keep-best.

Orbax writes each checkpoint under a temporary name and renames it when complete, so a kill -9 mid-save
leaves the previous checkpoint intact (a save that fails removes its unfinished folder). A checkpoint that
cannot be read back (damaged files) is skipped with a warning, moved to `damaged/` (kept for a look, out of
the way: it would otherwise stay "newest", so no older step could be saved, and could be ranked best), and
the next older one is used; a damaged metrics file alone leaves the checkpoint unscored. A read that fails
for lack of memory or file handles is an error (the files may be fine). An intact checkpoint of another
model layout (an earlier version, other model settings) stops the restore with an error instead: nothing is
overwritten.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from trainer.errors import TrainerError

__all__ = ["Checkpointer"]

log = logging.getLogger(__name__)

KEEP_DAMAGED = 3
"""Damaged checkpoints kept in `damaged/` (the oldest beyond these are deleted)."""


def _transient(exc: BaseException) -> bool:
    """True for a failure that says nothing about the files (memory, file handles): the checkpoint is kept."""
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, MemoryError) or (isinstance(e, OSError) and e.errno in (errno.EMFILE, errno.ENFILE,
                                                                                 errno.ENOMEM, errno.ENOSPC)):
            return True
        if e is not None and "RESOURCE_EXHAUSTED" in str(e):
            return True
    return False


class _Manager(ocp.CheckpointManager):
    """Orbax's manager, reading a damaged metrics file as none (orbax raised, from its constructor too)."""

    def metrics(self, step: int) -> Any:
        try:
            return super().metrics(step)
        except (OSError, ValueError) as exc:
            if _transient(exc):  # no file handles or memory: not damage (read as none, BestN would prune the best)
                raise
            log.debug("checkpoint %d: unreadable metrics (%s)", step, exc)
            return None


class Checkpointer:
    """Saves and restores {state, meta} pytrees under `directory/<step>`."""

    def __init__(self, directory: Path, *, keep: int = 3, keep_best: int = 1, best_metric: str = "score",
                 read_only: bool = False) -> None:
        """`read_only`: restore only, and touch nothing on disk (no folder made, no unfinished save of a run
        that is still training cleaned up, no old checkpoint deleted): for eval and diagnostics.

        `best_metric` names what ranks checkpoints; checkpoints saved with another one (the run ranked them
        on another scale before) rank below every checkpoint that has it."""
        self.directory = Path(directory).resolve()
        self.best_metric = best_metric
        self.read_only = read_only
        policies = [ocm.LatestN(keep)]
        if keep_best:
            policies.append(ocm.BestN(get_metric_fn=lambda m: m.get(best_metric, -math.inf), n=keep_best,
                                      keep_checkpoints_without_metrics=False))
        multiprocessing = ocp.options.MultiprocessingOptions()
        if jax.process_count() > 1:
            # Training across processes: process 0 alone writes (host copies of the replicated state).
            multiprocessing = ocp.options.MultiprocessingOptions(primary_host=0, active_processes={0})
        if not read_only:
            self.directory.mkdir(parents=True, exist_ok=True)  # orbax will not create it for a subset of processes
        # best_fn makes orbax write each checkpoint's metrics to disk: without it, BestN ranks only what this
        # process saved, and after a restart the best checkpoint is no longer kept.
        options = ocp.CheckpointManagerOptions(preservation_policy=ocm.AnyPreservationPolicy(policies),
                                               best_fn=(lambda m: m.get(best_metric, -math.inf)) if keep_best else None,
                                               enable_async_checkpointing=False,
                                               cleanup_tmp_directories=not read_only, read_only=read_only,
                                               create=False, multiprocessing_options=multiprocessing)
        self._set_aside_damaged_metrics()
        self._manager = _Manager(self.directory, options=options)
        if not read_only:
            self._recover_replaced()

    def _set_aside_damaged_metrics(self) -> None:
        """Set aside (warned once) every metrics file that is not JSON (a power cut: orbax does not sync its
        files), so its checkpoint counts as unscored. Orbax reads every checkpoint's metrics when it opens the
        folder (`_Manager` reads a damaged one as none; restore decides whether the checkpoint is usable)."""
        if self.read_only or jax.process_index() != 0:
            return
        for path in sorted(self.directory.glob("*/metrics/metrics")):
            if not path.parent.parent.name.isdigit():
                continue
            try:
                json.loads(path.read_bytes())
            except (OSError, ValueError) as exc:
                try:
                    path.rename(path.with_name("metrics.damaged"))
                    kept = "set aside; the checkpoint counts as unscored"
                except OSError as exc2:
                    kept = f"could not be set aside ({exc2})"
                log.warning("checkpoint %s has a damaged metrics file (%s: %s); %s", path.parent.parent.name,
                            type(exc).__name__, str(exc)[:100], kept)

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def metrics(self, step: int) -> dict[str, float] | None:
        """Return the metrics checkpoint `step` was saved with (None: saved without, or unreadable)."""
        try:
            found = self._manager.metrics(step)
        except Exception:  # a damaged metrics file ranks nothing; restore decides whether the step is usable
            return None
        if not isinstance(found, dict) or not isinstance(found.get(self.best_metric), int | float):
            return None
        return {k: float(v) for k, v in found.items() if isinstance(v, int | float)}

    def ranked(self) -> list[tuple[int, dict[str, float]]]:
        """Return (step, metrics) of every checkpoint saved with a metric, best first (newest first on ties)."""
        found = [(step, m) for step in self.steps() if (m := self.metrics(step)) is not None]
        return sorted(found, key=lambda sm: (sm[1][self.best_metric], sm[0]), reverse=True)

    def save(self, step: int, state: Any, meta: dict[str, int | float], metric: float | None = None,
             extra: dict[str, float] | None = None) -> float:
        """Write a checkpoint for `step`; return the seconds it took. `metric` ranks it for keep-best; `extra`
        (e.g. the metric's standard error, its episode count) is kept beside it when it is given."""
        t0 = time.monotonic()
        tree = {"state": state, "meta": {k: np.asarray(v) for k, v in meta.items()}}
        # An unscored save gets empty metrics, not None: it ranks below every scored one (and orbax does not
        # warn that the tracked metric is missing).
        metrics = {self.best_metric: float(metric)} if metric is not None and np.isfinite(metric) else {}
        if metrics and extra:
            metrics.update({k: float(v) for k, v in extra.items() if np.isfinite(v)})
        try:
            self._manager.save(step, args=ocp.args.StandardSave(tree), metrics=metrics, force=True)
            self._manager.wait_until_finished()
        except BaseException:
            self._remove_unfinished(step)
            raise
        elapsed = time.monotonic() - t0
        log.info("saved checkpoint %d in %.1fs", step, elapsed)
        return elapsed

    def _remove_unfinished(self, step: int) -> None:
        """Delete what a failed save of `step` left (orbax removes its tmp folders only when a manager opens):
        on a nearly full disk every failed attempt kept a partial copy of the train state."""
        if self.read_only or jax.process_index() != 0:
            return
        for leftover in self.directory.glob(f"{step}.orbax-checkpoint-tmp*"):
            shutil.rmtree(leftover, ignore_errors=True)
            log.info("removed the unfinished save %s", leftover.name)

    def restore(self, state_template: Any, meta_template: dict[str, int | float], *,
                steps: list[int] | None = None) -> tuple[int, Any, dict] | None:
        """Return (step, state, meta) of the first readable checkpoint of `steps` (default: newest first), or
        None when there is none."""
        template = {"state": state_template, "meta": {k: np.asarray(v) for k, v in meta_template.items()}}
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        for step in sorted(self._manager.all_steps(), reverse=True) if steps is None else steps:
            try:
                tree = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as exc:  # any damage: fall back to the previous checkpoint
                mismatch = self._layout_mismatch(step, abstract)
                if mismatch:  # intact, but another model's: starting afresh would lose it to keep-N later
                    raise TrainerError(
                        f"checkpoint {step} in {self.directory} was saved by a model with another parameter "
                        f"layout ({mismatch}): an earlier DreamStream version or other model settings wrote it. "
                        "Resume with the version and config that wrote it, or train in a new run dir "
                        "(--logdir); nothing was changed or deleted.") from exc
                if _transient(exc):
                    # The files may be fine: going on to an older checkpoint would train on from it, and this
                    # newer one would refuse every save until the update count passed it again.
                    raise TrainerError(
                        f"checkpoint {step} in {self.directory} could not be read for lack of memory or file "
                        f"handles ({type(exc).__name__}: {str(exc)[:200]}); nothing was changed. Free memory "
                        "(another process on the GPU?) or raise the open-files limit, then try again; if it keeps "
                        f"failing, the checkpoint itself may be damaged: move {self.directory / str(step)} aside by "
                        "hand.") from exc
                log.warning("checkpoint %d is unreadable (%s: %s)%s; trying %s", step, type(exc).__name__,
                            str(exc)[:200], self._set_aside(step), "an older one" if steps is None else "the next one")
                continue
            meta = {k: v.item() for k, v in tree["meta"].items()}
            log.info("restored checkpoint %d", step)
            return step, tree["state"], meta
        return None

    def _layout_mismatch(self, step: int, abstract: Any) -> str:
        """Describe how checkpoint `step`'s stored tree differs from `abstract` in keys or shapes ('' when it
        does not, or when its metadata is unreadable too: then it is damage, not another model)."""
        try:
            stored = self._manager.item_metadata(step).tree
        except Exception:
            return ""
        name = lambda k: str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
        shapes = lambda tree: {"/".join(map(name, path)): tuple(getattr(leaf, "shape", ()) or ()) for path, leaf
                               in jax.tree_util.tree_flatten_with_path(tree)[0]}
        try:
            have, want = shapes(stored), shapes(abstract)
        except Exception:
            return ""
        parts = []
        for label, keys in (("missing", sorted(want.keys() - have.keys())),
                            ("unexpected", sorted(have.keys() - want.keys())),
                            ("other shape", sorted(k for k in want.keys() & have.keys() if want[k] != have[k]))):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}")
        return "; ".join(parts)

    def _set_aside(self, step: int) -> str:
        """Move a damaged checkpoint to `damaged/`; return how that went, for the warning."""
        if self.read_only or jax.process_index() != 0:
            return ""
        target = self.directory / "damaged" / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            target.parent.mkdir(exist_ok=True)
            (self.directory / str(step)).rename(target)
        except OSError as exc:
            return f", and could not be moved aside ({exc})"
        finally:
            self._manager.reload()
        for old in sorted(target.parent.iterdir(), key=lambda p: p.stat().st_mtime)[:-KEEP_DAMAGED]:
            shutil.rmtree(old, ignore_errors=True)  # the newest few are kept for a look, not the disk's worth
        return f", moved to {target}"

    def delete(self, step: int) -> None:
        """Remove checkpoint `step` from disk."""
        self._manager.delete(step)

    def replace(self, step: int, state: Any, meta: dict[str, int | float]) -> float:
        """Save `state` as checkpoint `step` in place of the one there (unscored), so that a kill -9 at any
        point leaves one of the two: the old one is renamed aside first, and put back at the next start if
        the new one was not finished."""
        aside = self.directory / f"replaced-{step}"
        if aside.exists():
            shutil.rmtree(aside)
        (self.directory / str(step)).rename(aside)
        self._manager.reload()
        try:
            elapsed = self.save(step, state, meta)
        except BaseException:
            if not (self.directory / str(step)).exists():
                aside.rename(self.directory / str(step))
                self._manager.reload()
            raise
        shutil.rmtree(aside, ignore_errors=True)
        return elapsed

    def _recover_replaced(self) -> None:
        """After a kill -9 inside `replace`: keep the new checkpoint if it was finished, else the old one."""
        for aside in self.directory.glob("replaced-*"):
            step = aside.name.removeprefix("replaced-")
            if not step.isdigit():
                continue
            if (self.directory / step).exists():
                shutil.rmtree(aside, ignore_errors=True)
            else:
                aside.rename(self.directory / step)
                log.warning("checkpoint %s was being replaced when the run stopped; the previous one is back", step)
        self._manager.reload()

    def close(self) -> None:
        self._manager.close()
