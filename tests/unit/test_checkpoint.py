"""Checkpoints on real files with orbax: round trip, keep-N plus keep-best, damaged ones skipped."""

from __future__ import annotations

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from trainer.checkpoint import Checkpointer


def state_of(value: float) -> dict:
    return {"params": {"w": jnp.full((3, 4), value), "b": jnp.arange(4.0) * value}, "step": jnp.asarray(7)}


def test_round_trip_is_exact(tmp_path) -> None:
    ck = Checkpointer(tmp_path / "ck")
    state = state_of(1.5)
    ck.save(10, state, {"updates": 10, "env_step": 320})
    step, restored, meta = ck.restore(state_of(0.0), {"updates": 0, "env_step": 0})
    assert step == 10 and meta == {"updates": 10, "env_step": 320}
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), restored, state)))
    ck.close()


def test_keeps_the_newest_and_the_best(tmp_path) -> None:
    ck = Checkpointer(tmp_path / "ck", keep=2, keep_best=1)
    for step, score in [(1, 5.0), (2, 9.0), (3, 1.0), (4, 2.0), (5, 3.0)]:
        ck.save(step, state_of(step), {"updates": step, "env_step": 0}, metric=score)
    assert ck.steps() == [2, 4, 5]  # the two newest, and the best (score 9)
    ck.close()


def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, caplog) -> None:
    ck = Checkpointer(tmp_path / "ck", keep=3)
    ck.save(1, state_of(1.0), {"updates": 1, "env_step": 0})
    ck.save(2, state_of(2.0), {"updates": 2, "env_step": 0})
    for path in (tmp_path / "ck" / "2").rglob("*"):
        if path.is_file() and path.stat().st_size > 0:
            path.write_bytes(b"\0" * 7)  # torn files
    step, restored, _ = ck.restore(state_of(0.0), {"updates": 0, "env_step": 0})
    assert step == 1 and np.allclose(restored["params"]["w"], 1.0)
    assert "checkpoint 2 is unreadable" in caplog.text
    # Moved aside, kept for a look: it is no longer "newest", so the run's next save (of an older update
    # count than the damaged one) is written, and it can never be ranked or restored.
    assert ck.steps() == [1] and [p.name.split("-")[0] for p in (tmp_path / "ck" / "damaged").iterdir()] == ["2"]
    ck.save(2, state_of(2.5), {"updates": 2, "env_step": 0}, metric=1.0)
    ck.close()
    ck = Checkpointer(tmp_path / "ck", keep=3)
    assert ck.steps() == [1, 2] and ck.restore(state_of(0.0), {"updates": 0, "env_step": 0})[0] == 2
    ck.close()


def test_only_real_damage_moves_a_checkpoint_aside_and_only_the_newest_damaged_are_kept(tmp_path) -> None:
    import errno
    import time

    from trainer.checkpoint import KEEP_DAMAGED, _transient

    # Lack of memory or file handles says nothing about the files: such a checkpoint stays where it is.
    assert _transient(MemoryError()) and _transient(OSError(errno.EMFILE, "Too many open files"))
    chained = ValueError("restore failed")
    chained.__cause__ = RuntimeError("RESOURCE_EXHAUSTED: out of memory allocating 4 GB")
    assert _transient(chained) and not _transient(ValueError("bad header")) and not _transient(OSError(errno.EIO, ""))
    damaged = tmp_path / "ck" / "damaged"
    for i in range(KEEP_DAMAGED + 2):  # left by earlier sessions
        (damaged / f"{90 + i}-old").mkdir(parents=True)
        t = time.time() - 1000 + i
        os.utime(damaged / f"{90 + i}-old", (t, t))
    ck = Checkpointer(tmp_path / "ck", keep=3)
    ck.save(1, state_of(1.0), {"updates": 1, "env_step": 0})
    ck.save(2, state_of(2.0), {"updates": 2, "env_step": 0})
    for path in (tmp_path / "ck" / "2").rglob("*"):
        if path.is_file() and path.stat().st_size > 0:
            path.write_bytes(b"\0" * 7)
    assert ck.restore(state_of(0.0), {"updates": 0, "env_step": 0})[0] == 1
    kept = sorted(p.name.split("-")[0] for p in damaged.iterdir())
    assert len(kept) == KEEP_DAMAGED and "2" in kept and "90" not in kept  # the oldest went
    ck.close()


def test_a_replaced_checkpoint_survives_a_kill_at_any_point(tmp_path) -> None:
    ck = Checkpointer(tmp_path / "ck", keep=3)
    ck.save(1, state_of(1.0), {"updates": 1, "env_step": 0})
    ck.save(2, state_of(2.0), {"updates": 2, "env_step": 0}, metric=5.0)
    ck.replace(2, state_of(7.0), {"updates": 2, "env_step": 9})
    step, restored, meta = ck.restore(state_of(0.0), {"updates": 0, "env_step": 0})
    assert (step, meta["env_step"]) == (2, 9) and np.allclose(restored["params"]["w"], 7.0)
    assert ck.metrics(2) is None and not list((tmp_path / "ck").glob("replaced-*"))  # unscored, nothing left
    ck.close()
    # A kill -9 after the old one was renamed aside, before the new one was finished: the old one comes back.
    (tmp_path / "ck" / "2").rename(tmp_path / "ck" / "replaced-2")
    ck = Checkpointer(tmp_path / "ck", keep=3)
    assert ck.steps() == [1, 2] and np.allclose(ck.restore(state_of(0.0), {"updates": 0, "env_step": 0})[1]
                                                ["params"]["w"], 7.0)
    ck.close()
    # A kill -9 after the new one was finished, before the old one was removed: the new one stays.
    shutil.copytree(tmp_path / "ck" / "1", tmp_path / "ck" / "replaced-2")
    ck = Checkpointer(tmp_path / "ck", keep=3)
    assert ck.steps() == [1, 2] and ck.restore(state_of(0.0), {"updates": 0, "env_step": 0})[1]["params"]["w"][0, 0] \
        == 7.0 and not (tmp_path / "ck" / "replaced-2").exists()
    ck.close()


def test_no_checkpoint_gives_none(tmp_path) -> None:
    ck = Checkpointer(tmp_path / "ck")
    assert ck.restore(state_of(0.0), {"updates": 0, "env_step": 0}) is None
    ck.close()


def test_torn_array_data_with_intact_metadata_still_falls_back(tmp_path, caplog) -> None:
    ck = Checkpointer(tmp_path / "ck", keep=3)
    ck.save(1, state_of(1.0), {"updates": 1, "env_step": 0})
    ck.save(2, state_of(2.0), {"updates": 2, "env_step": 0})
    torn = 0
    for path in (tmp_path / "ck" / "2").rglob("*"):
        if path.is_file() and "metadata" not in path.name.lower() and path.stat().st_size > 0:
            path.write_bytes(b"\0" * 7)
            torn += 1
    assert torn
    step, _, _ = ck.restore(state_of(0.0), {"updates": 0, "env_step": 0})
    assert step == 1 and "checkpoint 2 is unreadable" in caplog.text
    ck.close()


def test_a_checkpoint_of_another_model_layout_stops_with_a_clear_error_and_is_kept(tmp_path) -> None:
    """E.g. a chess run dir from before the mask head: restoring must not start afresh (keep-N would then
    delete the old model's checkpoints) but say what differs."""
    import pytest

    from app.config import load_blocks
    from trainer.config import TrainerConfig
    from trainer.dreamer import init_state
    from trainer.errors import TrainerError
    from trainer.model import ActSpace

    cfg = TrainerConfig(**load_blocks()["tiny"]["trainer"])
    # The layouts only (traced, not computed: values do not matter here).
    layout = lambda act: jax.eval_shape(lambda key: init_state(cfg, act, (16, 16, 3), key), jax.random.PRNGKey(0))
    old = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), layout(ActSpace(True, 6)))
    ck = Checkpointer(tmp_path / "ck", keep=3)
    ck.save(3, old, {"updates": 3, "env_step": 0})
    assert ck.restore(old, {"updates": 0, "env_step": 0})[0] == 3  # the same layout restores
    new = layout(ActSpace(True, 6, masked=True))
    with pytest.raises(TrainerError, match=r"another parameter layout \(missing: .*mask_mlp") as err:
        ck.restore(new, {"updates": 0, "env_step": 0})
    assert "unexpected" not in str(err.value) and "new run dir" in str(err.value)
    assert ck.steps() == [3]
    ck.close()


def test_a_read_only_checkpointer_restores_and_touches_nothing(tmp_path) -> None:
    """Eval and diagnostics read a run that may still be training: they must not clean up its unfinished
    save (a plain checkpointer deletes orbax's tmp folders when it opens, measured alone; not reliably
    after other managers in the same process, so the test does not assert it) nor create folders."""
    ck = Checkpointer(tmp_path / "ck")
    ck.save(1, state_of(1.0), {"updates": 1, "env_step": 0})
    ck.close()
    unfinished = tmp_path / "ck" / "2.orbax-checkpoint-tmp-1795738444123456"  # a save in progress
    shutil.copytree(tmp_path / "ck" / "1", unfinished)
    reader = Checkpointer(tmp_path / "ck", read_only=True)
    step, restored, _ = reader.restore(state_of(0.0), {"updates": 0, "env_step": 0})
    reader.close()
    assert step == 1 and np.allclose(restored["params"]["w"], 1.0) and unfinished.exists()
    missing = Checkpointer(tmp_path / "none", read_only=True)
    assert missing.restore(state_of(0.0), {"updates": 0, "env_step": 0}) is None
    missing.close()
    assert not (tmp_path / "none").exists()


def test_ranked_lists_scored_checkpoints_best_first_and_survives_a_reopen(tmp_path) -> None:
    ck = Checkpointer(tmp_path / "ck", keep=5, keep_best=1)
    for step, score in [(1, 2.0), (2, None), (3, 7.5), (4, 7.5), (5, -1.0)]:
        ck.save(step, state_of(step), {"updates": step, "env_step": 0}, metric=score,
                extra={"score_sem": 0.5, "episodes": 10.0})
    ck.close()
    ck = Checkpointer(tmp_path / "ck", keep=5, keep_best=1, read_only=True)
    assert [step for step, _ in ck.ranked()] == [4, 3, 1, 5]  # step 2 had no score; ties: the newer first
    assert ck.metrics(3) == {"score": 7.5, "score_sem": 0.5, "episodes": 10.0}
    assert ck.metrics(2) is None
    step, restored, _ = ck.restore(state_of(0.0), {"updates": 0, "env_step": 0}, steps=[3, 1])
    assert step == 3 and np.allclose(restored["params"]["w"], 3.0)
    ck.close()


def test_restore_of_chosen_steps_skips_a_damaged_one_to_the_next(tmp_path, caplog) -> None:
    ck = Checkpointer(tmp_path / "ck", keep=3)
    for step in (1, 2, 3):
        ck.save(step, state_of(step), {"updates": step, "env_step": 0}, metric=float(step))
    for path in (tmp_path / "ck" / "3").rglob("*"):
        if path.is_file() and "metric" not in str(path) and path.stat().st_size > 0:
            path.write_bytes(b"\0" * 7)
    step, restored, _ = ck.restore(state_of(0.0), {"updates": 0, "env_step": 0}, steps=[3, 1])
    assert step == 1 and np.allclose(restored["params"]["w"], 1.0)  # 2 was not a candidate
    assert "checkpoint 3 is unreadable" in caplog.text and "trying the next one" in caplog.text
    ck.close()


def test_the_best_checkpoint_is_still_kept_after_a_restart(tmp_path) -> None:
    ck = Checkpointer(tmp_path / "ck", keep=2, keep_best=1)
    for step, score in [(1, 1.0), (2, 9.0), (3, 2.0)]:
        ck.save(step, state_of(step), {"updates": step, "env_step": 0}, metric=score)
    ck.close()
    ck = Checkpointer(tmp_path / "ck", keep=2, keep_best=1)  # a new session of the run
    for step, score in [(4, 3.0), (5, 4.0), (6, None)]:
        ck.save(step, state_of(step), {"updates": step, "env_step": 0}, metric=score)
    assert ck.steps() == [2, 5, 6] and ck.ranked()[0][0] == 2
    ck.close()


def test_checkpoints_ranked_on_another_scale_never_outrank_the_current_one(tmp_path) -> None:
    """A chess run ranked by mean return, then by Elo: the old scores are not compared with Elos."""
    ck = Checkpointer(tmp_path / "ck", keep=1, keep_best=1, best_metric="score")
    ck.save(1, state_of(1), {"updates": 1, "env_step": 0}, metric=900.0)
    ck.close()
    ck = Checkpointer(tmp_path / "ck", keep=1, keep_best=1, best_metric="elo")
    assert ck.ranked() == [] and ck.metrics(1) is None
    for step, elo in [(2, 150.0), (3, 120.0), (4, 100.0)]:
        ck.save(step, state_of(step), {"updates": step, "env_step": 0}, metric=elo)
    assert [step for step, _ in ck.ranked()] == [2, 4] and ck.steps() == [2, 4]  # the newest, the best Elo
    ck.close()


def test_unscored_saves_rank_below_scored_ones_without_a_warning(tmp_path, caplog) -> None:
    """Shutdown and rolled-back saves have no score: they never displace the best, and orbax does not warn."""
    ck = Checkpointer(tmp_path / "ck", keep=1, keep_best=1)
    with caplog.at_level("WARNING"):
        for step, score in [(1, None), (2, 4.0), (3, None), (4, None)]:
            ck.save(step, state_of(step), {"updates": step, "env_step": 0}, metric=score)
    assert ck.steps() == [2, 4] and [step for step, _ in ck.ranked()] == [2]
    assert ck.metrics(4) is None
    assert not [r for r in caplog.records if r.levelname == "WARNING"], caplog.text
    ck.close()


def test_a_damaged_metrics_file_leaves_its_checkpoint_unscored_instead_of_stopping_the_start(tmp_path, caplog) -> None:
    """Orbax reads every checkpoint's metrics when it opens the folder: one file emptied by a power cut made
    the constructor fail, so the run could not start at all."""
    ck = Checkpointer(tmp_path / "ck", keep=3)
    for step, score in [(1, 1.0), (2, 2.0), (3, None)]:
        ck.save(step, state_of(step), {"updates": step, "env_step": 0}, metric=score)
    ck.close()
    (tmp_path / "ck" / "2" / "metrics" / "metrics").write_bytes(b"")
    reader = Checkpointer(tmp_path / "ck", read_only=True)  # eval: touches nothing, ranks what it can read
    assert reader.ranked() == [(1, {"score": 1.0})]
    reader.close()
    assert (tmp_path / "ck" / "2" / "metrics" / "metrics").exists()
    ck = Checkpointer(tmp_path / "ck", keep=2)
    assert "checkpoint 2 has a damaged metrics file" in caplog.text
    assert ck.steps() == [1, 2, 3] and ck.ranked() == [(1, {"score": 1.0})]
    step, restored, _ = ck.restore(state_of(0.0), {"updates": 0, "env_step": 0}, steps=[2])
    assert step == 2 and np.allclose(restored["params"]["w"], 2.0)  # the checkpoint itself is fine
    ck.save(4, state_of(4.0), {"updates": 4, "env_step": 0}, metric=0.5)
    assert ck.steps() == [1, 3, 4]  # the two newest and the best: keep-N pruned the unscored 2
    ck.close()


def test_a_read_failing_for_lack_of_memory_is_an_error_not_a_fall_back(tmp_path, monkeypatch) -> None:
    """Falling back would resume from an older checkpoint, and the newer one, kept, refused every later save."""
    import pytest

    from trainer.errors import TrainerError

    ck = Checkpointer(tmp_path / "ck", keep=3)
    ck.save(1, state_of(1.0), {"updates": 1, "env_step": 0})
    ck.save(2, state_of(2.0), {"updates": 2, "env_step": 0})

    def out_of_memory(step, args=None):
        raise RuntimeError("restore failed") from RuntimeError("RESOURCE_EXHAUSTED: out of memory allocating 4 GB")

    monkeypatch.setattr(ck._manager, "restore", out_of_memory)
    with pytest.raises(TrainerError, match="checkpoint 2 .* could not be read for lack of memory or file handles"):
        ck.restore(state_of(0.0), {"updates": 0, "env_step": 0})
    assert ck.steps() == [1, 2] and not (tmp_path / "ck" / "damaged").exists()
    ck.close()


def test_a_failed_save_leaves_no_unfinished_folder(tmp_path) -> None:
    """Orbax removes its tmp folders only when a manager opens: on a nearly full disk, each failed attempt kept a
    partial copy of the train state until the next restart."""
    import pytest

    ck = Checkpointer(tmp_path / "ck", keep=3)
    ck.save(1, state_of(1.0), {"updates": 1, "env_step": 0})
    with pytest.raises(ValueError):
        ck.save(2, {"params": np.array([object()], dtype=object)}, {"updates": 2, "env_step": 0})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["1"]
    ck.save(2, state_of(2.0), {"updates": 2, "env_step": 0})
    assert ck.steps() == [1, 2]
    ck.close()
