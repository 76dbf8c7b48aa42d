"""`make setup`: what it would install (dry run, nothing is installed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[2]


def pip_line(tmp_path: Path, *make_args: str) -> str:
    out = subprocess.run(["make", "-n", "-C", str(ROOT), "python-packages", f"VENV={tmp_path / 'venv'}",
                          *make_args], capture_output=True, text=True, check=True).stdout
    return next(line for line in out.splitlines() if "pip install -q -e" in line)


def test_setup_installs_jax_cuda_when_asked_or_when_a_gpu_answers(tmp_path) -> None:
    assert pip_line(tmp_path, "CUDA=1").endswith("'.[dev,cuda]'")
    assert pip_line(tmp_path, "CUDA=0").endswith("'.[dev]'")
    # auto: this machine has no nvidia-smi answering, so no CUDA build.
    gpu = subprocess.run("nvidia-smi -L", shell=True, capture_output=True).returncode == 0
    assert pip_line(tmp_path).endswith("'.[dev,cuda]'" if gpu else "'.[dev]'")
