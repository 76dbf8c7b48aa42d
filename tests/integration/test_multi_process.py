"""Parallel training gives the update of one device: data-parallel over 2 forced host devices in one process,
and split over two processes joined by jax.distributed (gloo on CPU), on the same batch; process 0's values
reach every process. `dreamstream train` over two processes checkpoints once and resumes everywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from stream.local_server import free_port

pytestmark = pytest.mark.integration


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.helpers.multi_process", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_two_devices_and_two_processes_give_the_one_device_update(tmp_path) -> None:
    base = {**os.environ, "JAX_PLATFORMS": "cpu"}
    single = result(start(["single", str(tmp_path)], {**base, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}))
    one, two = single["one"], single["two"]
    assert single["processes"] == 1 and single["devices"] == 2
    assert one["mesh_devices"] == 0 and not one["all_reduce"]  # one device: no collective
    assert two["mesh_devices"] == 2 and two["all_reduce"]  # the batch really was split over both devices
    assert one["local_batch"] == two["local_batch"] == 4
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-4)
    p_one, p_two = np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")
    assert p_one.shape == p_two.shape
    np.testing.assert_allclose(p_two, p_one, rtol=1e-4, atol=1e-7)

    port = free_port()
    procs = [start(["multi", str(tmp_path / f"p{i}.npy"), str(i), "2", str(port)], base) for i in range(2)]
    multi = [result(p) for p in procs]
    for r in multi:
        assert r["processes"] == 2 and r["devices"] == 2 and r["local_batch"] == 2 and r["mesh_devices"] == 2
        assert r["loss"] == pytest.approx(one["loss"], rel=1e-4)
        assert r["broadcast"] == 1.0  # process 0's value, in both
        # A rollback in process 0 (its state: parameters + 1) is taken by every process's learner loop.
        back = r["rollback"]
        assert back["after"] == pytest.approx(back["before"] + back["shift"], rel=1e-9) and back["loop_ended"]
    p0, p1 = (np.load(tmp_path / f"p{i}.npy") for i in range(2))
    np.testing.assert_array_equal(p0, p1)  # the same parameters in every process
    np.testing.assert_allclose(p0, p_one, rtol=1e-4, atol=1e-7)


def train(i: int, port: int, logdir, steps: int) -> subprocess.Popen:
    from tests.conftest import DREAMSTREAM

    return subprocess.Popen([DREAMSTREAM, "train", "--configs", "tiny", "catch", "--logdir", str(logdir),
                             "--run.steps", str(steps), "--run.train_ratio", "2",
                             "--trainer.distributed.coordinator", f"127.0.0.1:{port}",
                             "--trainer.distributed.num_processes", "2", "--trainer.distributed.process_id", str(i)],
                            env={**os.environ, "JAX_PLATFORMS": "cpu"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(procs: list[subprocess.Popen]) -> list[str]:
    outs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
    return outs


def test_dreamstream_train_over_two_processes_checkpoints_once_and_resumes_everywhere(tmp_path) -> None:
    dirs = [tmp_path / "p0", tmp_path / "p1"]
    outs = finish(_pair(dirs, 240))
    assert all("data-parallel training over 2 devices" in out for out in outs)
    states = [json.loads((d / "state.json").read_text()) for d in dirs]
    assert states[0]["updates"] == states[1]["updates"] > 0  # every update was taken together
    assert list((dirs[0] / "checkpoints").glob("[0-9]*")), "process 0 writes checkpoints"
    assert not list((dirs[1] / "checkpoints").glob("[0-9]*")), "the other process writes none"
    before = states[0]["updates"]
    outs = finish(_pair(dirs, 320))  # resume: process 0 restores, the other receives its state
    assert "restored checkpoint" in outs[0]
    states = [json.loads((d / "state.json").read_text()) for d in dirs]
    assert states[0]["updates"] == states[1]["updates"] > before


def _pair(dirs, steps: int) -> list[subprocess.Popen]:
    port = free_port()
    return [train(i, port, d, steps) for i, d in enumerate(dirs)]
