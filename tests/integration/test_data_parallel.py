"""Data-parallel training on 2 fake CPU devices gives the same update as on 1 device (same batch, key)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.integration


def run(n: int, out) -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "tests.helpers.data_parallel", str(n), str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_devices_give_the_one_device_update(tmp_path) -> None:
    one, two = run(1, tmp_path / "one.npy"), run(2, tmp_path / "two.npy")
    assert one["devices"] == two["devices"] == 2
    assert two["hlo_all_reduce"] and not one["hlo_all_reduce"]  # the batch really was split
    p1, p2 = np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")
    assert p1.shape == p2.shape
    np.testing.assert_allclose(p2, p1, rtol=1e-4, atol=1e-7)
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-4)
