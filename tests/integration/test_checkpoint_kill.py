"""kill -9 while checkpoints are being written: the newest surviving checkpoint is complete and exact,
and a killed run resumes its learner from it."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time

import jax
import pytest

from tests.conftest import DREAMSTREAM, wait_for

pytestmark = pytest.mark.integration


def test_kill_9_mid_save_leaves_a_usable_exact_checkpoint(tmp_path) -> None:
    from app.config import load_blocks
    from tests.helpers.save_forever import checksum
    from trainer.checkpoint import Checkpointer
    from trainer.config import TrainerConfig
    from trainer.dreamer import init_state
    from trainer.model import ActSpace

    log = (tmp_path / "out.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "tests.helpers.save_forever", str(tmp_path)], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (tmp_path / "sums.json").exists() and len(json.loads((tmp_path / "sums.json")
                                                                               .read_text())) >= 5,
                 "five checkpoints")
        time.sleep(0.37)  # saves run back to back: the kill lands inside one most of the time
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    sums = json.loads((tmp_path / "sums.json").read_text())
    cfg = TrainerConfig(**load_blocks()["tiny"]["trainer"])
    template = jax.eval_shape(functools.partial(init_state, cfg, ActSpace(True, 3), (16, 16, 3)), jax.random.PRNGKey(1))
    ck = Checkpointer(tmp_path / "ck", keep=2, keep_best=0)
    step, state, meta = ck.restore(template, {"updates": 0, "env_step": 0})
    ck.close()
    assert str(step) in sums and meta == {"updates": step, "env_step": step * 10}
    assert checksum(state) == pytest.approx(sums[str(step)], rel=1e-12)
    assert int(state.step) == step


def checkpoints(logdir) -> list[int]:
    return [int(p.name) for p in (logdir / "checkpoints").glob("*") if p.name.isdigit()]


def test_killed_run_resumes_the_learner_from_its_checkpoint(tmp_path) -> None:
    logdir = tmp_path / "run"
    args = [DREAMSTREAM, "train", "--configs", "catch", "tiny", "--logdir", str(logdir),
            "--scheduler.checkpoint_interval_min", "0.05"]
    # The product's default: the compile cache in the run dir (not the test session's shared one).
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    proc = subprocess.Popen([*args, "--run.steps", "100000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    try:
        wait_for(lambda: checkpoints(logdir), "a scheduled checkpoint")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = max(checkpoints(logdir))  # complete ones only: a save cut by the kill stays a temporary dir
    state = json.loads((logdir / "state.json").read_text())
    out = subprocess.run([*args, "--run.steps", str(state["env_step"] + 200)], capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"restored checkpoint {saved}" in out.stderr
    final = json.loads((logdir / "state.json").read_text())
    assert final["updates"] > saved and final["sessions"] == 2
    # The resume found its train step in the compile cache: one entry, not a second for the restored state.
    assert len(list((logdir / "compile_cache").glob("jit_train_step-*"))) == 1
