"""One composed broadcast frame as a PNG, for `dreamstream render-overlay` and the README's picture.

The live view and the "reality" strip come from a short real Crafter episode with random actions. The rest is
sample data, and the frame says so: the "model" strips are blurred, noisy copies of real frames, and the
poll and chat are made up. Curves and results come from a run directory when one is given (its
`metrics/metrics.jsonl` and `dreamstream.db`), else they are smooth synthetic series and made-up scores.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import create_engine, select
from sqlalchemy.exc import SQLAlchemyError

import envs
from app.metrics import read_metrics
from app.storage import Episode
from overlays import ChatLine, Curve, Dream, Layout, OverlayError, OverlayState, Poll, Result, compose

__all__ = ["render_sample"]

log = logging.getLogger(__name__)

STEPS = 100
"""Random-action steps of the Crafter episode behind the sample."""
CONTEXT = 5
REALITY_LEN, FUTURE_LEN = 12, 12
LOGDIR_CURVES = (("episode score", "episode/score"), ("image loss", "loss/image"), ("dynamics loss", "loss/dyn"),
                 ("eval score", "eval/score"))
"""(chart title, metrics key) of the curves read from a run directory."""


def render_sample(out: Path, *, width: int = 1280, height: int = 720, logdir: Path | None = None) -> None:
    """Write one composed frame with every panel filled to `out` (PNG)."""
    rng = np.random.default_rng(0)
    frames, rewards, actions = _play_crafter(rng)
    now = len(frames) - FUTURE_LEN - 1  # frames after `now` become the sample "imagined future"
    reality = np.stack(frames[now - REALITY_LEN + 1: now + 1])
    future = np.stack(frames[now + 1:])
    dream = Dream(reality=reality, prediction=_dreamlike(reality[CONTEXT:], rng), context=CONTEXT,
                  imagined=_dreamlike(future, rng),
                  imagined_reward=np.asarray(rewards[now:now + FUTURE_LEN]) + rng.normal(0, 0.03, FUTURE_LEN),
                  version=1)
    curves = _logdir_curves(logdir) if logdir is not None else None
    results = _logdir_results(logdir) if logdir is not None else None
    state = OverlayState(
        run_name=logdir.name if logdir is not None else "sample run",
        game="crafter",
        notice=("SAMPLE: only the game and the reality strip are real" if curves is None
                else "SAMPLE: model strips, poll and chat are made up"),
        hud={"env steps": 1_234_567, "updates": 38_211, "env fps": 29.97, "updates / s": 0.34,
             "train ratio": 32.0, "checkpoint": "#42 · 12m", "uptime": "3d 04:12", "episodes": 812},
        action=actions[now - 1],
        dream=dream,
        curves=curves or _synthetic_curves(rng),
        results=results or tuple(Result(score=float(s)) for s in rng.integers(0, 9, 10) + rng.random(10).round(1)),
        poll=Poll(question="What should the agent try next?",
                  votes={"find diamonds": 14, "build a house": 9, "just survive": 5}, seconds_left=23),
        chat=(ChatLine(user="alice", text="!vote find diamonds"), ChatLine(user="bob", text="!vote build a house"),
              ChatLine(user="carol", text="!dream"), ChatLine(user="dave", text="!vote find diamonds"),
              ChatLine(user="eve", text="!help")),
    )
    image = compose(frames[now], state, Layout(width=width, height=height))
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise OverlayError(f"could not encode the sample frame as PNG for {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(png.tobytes())
    tmp.replace(out)
    log.info("wrote sample overlay %s (%dx%d, %d KB)", out, width, height, len(png) // 1024)


def _play_crafter(rng: np.random.Generator) -> tuple[list[np.ndarray], list[float], list[str]]:
    """Return the STEPS + 1 frames of random play in Crafter (reset after an episode end), with the reward and
    the action name of each step."""
    env = envs.make_from_config(envs.EnvConfig(id="crafter"))
    try:
        names = env.unwrapped.action_names
        allowed = [i for i, name in enumerate(names) if name != "sleep"]  # a sleeping player sees a black screen
        obs, _ = env.reset(seed=0)
        frames, rewards, actions = [obs["image"]], [], []
        for _ in range(STEPS):
            a = int(rng.choice(allowed))
            obs, reward, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                obs, _ = env.reset()
            frames.append(obs["image"])
            rewards.append(float(reward))
            actions.append(names[a])
    finally:
        env.close()
    return frames, rewards, actions


def _dreamlike(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return stand-ins for model predictions: copies that get blurrier and noisier further out."""
    out = []
    for i, frame in enumerate(frames):
        k = 1 + 2 * min(3, i // 3)
        blurred = cv2.GaussianBlur(frame, (k, k), 0).astype(np.int16)
        noise = rng.normal(0, 4 + 2 * i, frame.shape)
        out.append(np.clip(blurred + noise, 0, 255).astype(np.uint8))
    return np.stack(out)


def _synthetic_curves(rng: np.random.Generator) -> tuple[Curve, ...]:
    steps = np.linspace(0, 1.2e6, 2000)
    evals = steps[::100]
    return (
        Curve(label="episode score", steps=steps,
              values=3 * np.log1p(steps / 1e5) + rng.normal(0, 1.2, steps.size), version=1),
        Curve(label="world-model loss", steps=steps,
              values=4 * np.exp(-steps / 2.5e5) + 1.2 + rng.normal(0, 0.08, steps.size), version=1),
        Curve(label="eval score", steps=evals, values=2.8 * np.log1p(evals / 1.2e5), version=1),
        Curve(label="Elo", steps=evals, values=1000 + evals / 5e3 + rng.normal(0, 15, evals.size), version=1),
    )


def _logdir_curves(logdir: Path) -> tuple[Curve, ...] | None:
    """Return the run's curves from metrics/metrics.jsonl, or None when it has none."""
    path = logdir / "metrics" / "metrics.jsonl"
    if not path.exists():
        return None
    series: dict[str, tuple[list[float], list[float]]] = {key: ([], []) for _, key in LOGDIR_CURVES}
    for row in read_metrics(path):
        for key, (xs, ys) in series.items():
            if row.get(key) is not None:
                xs.append(float(row["step"]))
                ys.append(float(row[key]))
    if not any(xs for xs, _ in series.values()):
        return None
    return tuple(Curve(label=label, steps=np.asarray(series[key][0]), values=np.asarray(series[key][1]), version=1)
                 for label, key in LOGDIR_CURVES)


def _logdir_results(logdir: Path) -> tuple[Result, ...] | None:
    """Return the last ten episodes of the run's database (opened read-only), or None when it has none."""
    path = logdir / "dreamstream.db"
    if not path.exists():
        return None
    engine = create_engine(f"sqlite:///file:{path.resolve()}?mode=ro&uri=true")
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Episode.result, Episode.score).order_by(Episode.id.desc()).limit(10)).all()
    except SQLAlchemyError as exc:  # an old or damaged database: the sample shows made-up results instead
        log.warning("cannot read episodes from %s (%s); showing sample results", path, exc.__class__.__name__)
        return None
    finally:
        engine.dispose()
    return tuple(Result(outcome=r.result, score=r.score) for r in reversed(rows)) or None
