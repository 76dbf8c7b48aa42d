"""`make setup`: what it would install (dry run, nothing is installed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[2]


def extras(tmp_path: Path, *make_args: str) -> str:
    out = subprocess.run(["make", "-n", "-C", str(ROOT), "python-packages", f"VENV={tmp_path / 'venv'}",
                          *make_args], capture_output=True, text=True, check=True).stdout
    return out.split("extras='", 1)[1].split("'", 1)[0]


def test_setup_installs_jax_cuda_when_asked_or_when_a_gpu_answers(tmp_path) -> None:
    assert extras(tmp_path, "CUDA=1") == "dev,cuda"
    assert extras(tmp_path, "CUDA=0") == "dev"
    # auto: the CUDA build when nvidia-smi answers (not on this machine, unless it has a GPU).
    gpu = subprocess.run("timeout 10 nvidia-smi -L", shell=True, capture_output=True).returncode == 0
    assert extras(tmp_path) == ("dev,cuda" if gpu else "dev")
