"""Learning proofs: train with `dreamstream train` for N env steps and K seeds, print the learning curve
and the final metric next to a random policy measured the same way. Not a test; it asserts nothing.

    .venv/bin/python benchmarks/learn.py --configs catch size1m --steps 10000 --seeds 1
    .venv/bin/python benchmarks/learn.py --configs mate1 size1m --steps 20000 --eval-episodes 500
    .venv/bin/python benchmarks/learn.py --configs crafter size1m --steps 100000

Final metrics: PixelCatch and others, the mean return of the last 200 training episodes; mate-in-1, the
share of held-out positions solved by the trained agent (`dreamstream eval` on the test split); Crafter,
the Crafter score (geometric mean of achievement success rates) and per-achievement rates.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DREAMSTREAM = str(Path(sys.executable).parent / "dreamstream")


def train(configs: list[str], steps: int, seed: int, logdir: Path, extra: list[str], random: bool) -> float:
    args = [DREAMSTREAM, "train", "--configs", *configs, "--logdir", str(logdir), "--run.steps", str(steps),
            "--trainer.seed", str(seed), "--env.seed", str(seed * 100_000), "--run.status_interval_s", "60",
            *extra]
    if random:
        args += ["--trainer.agent", "random"]
    t0 = time.monotonic()
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"training failed:\n{out.stderr[-3000:]}")
    return time.monotonic() - t0


def episodes(logdir: Path, mode: str = "train") -> list[tuple[int, float, dict]]:
    with sqlite3.connect(logdir / "dreamstream.db") as db:
        rows = db.execute("select env_step, score, details, result from episodes where mode = ? order by id",
                          (mode,)).fetchall()
    return [(step, score, {**json.loads(details), "result": result}) for step, score, details, result in rows]


def curve(eps: list[tuple[int, float, dict]], steps: int, points: int = 10) -> list[tuple[int, float]]:
    edges = np.linspace(0, steps, points + 1)
    out = []
    for lo, hi in itertools.pairwise(edges):
        scores = [s for step, s, _ in eps if lo < step <= hi]
        out.append((int(hi), round(float(np.mean(scores)), 3) if scores else float("nan")))
    return out


def crafter_score(eps: list[tuple[int, float, dict]]) -> tuple[float, dict[str, float]]:
    """Return the Crafter score (%) and each achievement's success rate (%) over the episodes."""
    from envs.crafter_env import ACHIEVEMENTS

    rates = {a: 100.0 * np.mean([a in d.get("achievements", []) for _, _, d in eps]) for a in ACHIEVEMENTS}
    score = math.exp(np.mean([math.log(1 + r) for r in rates.values()])) - 1
    return score, rates


def evaluate_mate(logdir: Path, n: int) -> float:
    out = subprocess.run([DREAMSTREAM, "eval", "--logdir", str(logdir), "--episodes", str(n),
                          "--env.mate.split", "test"], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"eval failed:\n{out.stderr[-3000:]}")
    results = [d["result"] for _, _, d in episodes(logdir, "eval")]
    return 100.0 * np.mean([r == "win" for r in results])


def measure(args: argparse.Namespace, extra: list[str], random: bool, root: Path) -> dict:
    finals, walls, curves, details = [], [], [], {}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        logdir = root / f"{'random' if random else 'agent'}-{seed}"
        walls.append(train(args.configs, args.steps, seed, logdir, extra, random))
        eps = episodes(logdir)
        curves.append(curve(eps, args.steps))
        if "mate1" in args.configs:
            finals.append(evaluate_mate(logdir, args.eval_episodes))
        elif "crafter" in args.configs:
            score, rates = crafter_score(eps)
            finals.append(score)
            details[f"seed{seed}_rates"] = {k: round(v, 1) for k, v in rates.items()}
            # The last 20 % of the budget: what the agent does once it has learned, not the average over learning.
            late = [e for e in eps if e[0] > 0.8 * args.steps]
            late_score, late_rates = crafter_score(late)
            details[f"seed{seed}_late"] = {"episodes": len(late), "score": round(late_score, 3),
                                           "mean_return": round(float(np.mean([s for _, s, _ in late])), 3),
                                           "rates": {k: round(v, 1) for k, v in late_rates.items()}}
        else:
            finals.append(float(np.mean([s for _, s, _ in eps[-200:]])))
    return {"final": round(float(np.mean(finals)), 3), "final_per_seed": [round(f, 3) for f in finals],
            "wall_s": [round(w) for w in walls], "curve": curves, **details}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="*", default=["catch", "size1m"])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--eval-episodes", type=int, default=500)
    parser.add_argument("--keep", type=Path, default=None, help="keep the run dirs here")
    args, extra = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        metric = ("held-out solve rate %" if "mate1" in args.configs else
                  "Crafter score %" if "crafter" in args.configs else "mean return, last 200 episodes")
        result = {"configs": args.configs, "steps": args.steps, "seeds": args.seeds, "first_seed": args.first_seed,
                  "overrides": extra,
                  "metric": metric, "random": measure(args, extra, True, root),
                  "agent": measure(args, extra, False, root)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
