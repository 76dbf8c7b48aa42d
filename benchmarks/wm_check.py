"""What a trained world model and critic believe, on the run's own replay: a diagnostic that prints figures.

Loads the newest checkpoint and the replay of a run dir (after the run has stopped), filters replayed
sequences through the world model, and prints, per kind of step (reward +, reward -, reward 0,
terminal), the mean predicted reward and continue probability, plus the image error and the critic's
value at episode starts. A learning run that stays at random level shows here whether the world model
already tells outcomes apart (then look at the actor) or not (then look at the model and its data).

    .venv/bin/python benchmarks/wm_check.py --logdir /tmp/learn/agent-0 --batches 8
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", type=Path, required=True)
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()

    import envs
    from app.cli import prepare_run
    from app.training import load_policy
    from trainer.dists import twohot_mean
    from trainer.model import DreamerModel, feature
    from trainer.replay import Replay, step_spec

    cfg, rundir, _ = prepare_run([], [], args.logdir, {})
    rundir.unlock()
    env = envs.make_from_config(cfg.env)
    agent, step = load_policy(cfg, env.observation_space, env.action_space, rundir.root)
    t = cfg.trainer
    replay = Replay(step_spec(agent.image_shape), capacity=t.replay_capacity, length=t.batch_length,
                    chunk_steps=t.replay_chunk, directory=rundir.root / "replay")
    replay.load()
    replay.directory = None  # read only: nothing is written back
    model = agent.model

    @jax.jit
    def predict(params, batch, key):
        m = functools.partial(model.apply, {"params": params})
        B, T = batch["reward"].shape
        actions = jax.nn.one_hot(batch["action"], agent.act_space.n)
        prev = jnp.concatenate([jnp.zeros_like(actions[:, :1]), actions[:, :-1]], 1)
        first = batch["is_first"].at[:, 0].set(True)
        tokens = m(batch["image"], method=DreamerModel.encode)
        sw = lambda x: jnp.swapaxes(x, 0, 1)

        def observe(carry, x):
            token, act, f, k = x
            deter, stoch, _, _ = m(*carry, act, token, f, k, method=DreamerModel.obs_step)
            return (deter, stoch), (deter, stoch)

        _, (deter, stoch) = jax.lax.scan(observe, m(B, method=DreamerModel.initial),
                                         (sw(tokens), sw(prev), sw(first), jax.random.split(key, T)))
        deter, stoch = sw(deter), sw(stoch)
        feat = feature(deter, stoch)
        recon = m(deter, stoch, method=DreamerModel.decode)
        err = jnp.mean((recon - batch["image"] / 255.0) ** 2, (-3, -2, -1))
        return (twohot_mean(m(feat, method=DreamerModel.reward)), jax.nn.sigmoid(m(feat, method=DreamerModel.cont)),
                twohot_mean(m(feat, method=DreamerModel.value)), err)

    rows = {k: [] for k in ("reward", "pred_reward", "pred_cont", "value", "image_mse", "terminal", "first")}
    for i in range(args.batches):
        batch = replay.sample(t.batch_size)
        r, c, v, e = (np.asarray(x) for x in predict(agent.params, batch, jax.random.PRNGKey(i)))
        for key, val in (("reward", batch["reward"]), ("pred_reward", r), ("pred_cont", c[..., 0] if c.ndim == 3
                         else c), ("value", v), ("image_mse", e), ("terminal", batch["is_terminal"]),
                         ("first", batch["is_first"])):
            rows[key].append(np.asarray(val).reshape(-1))
    d = {k: np.concatenate(v) for k, v in rows.items()}

    def summary(mask: np.ndarray) -> dict:
        if not mask.any():
            return {"n": 0}
        return {"n": int(mask.sum()), "pred_reward": round(float(d["pred_reward"][mask].mean()), 3),
                "pred_cont": round(float(d["pred_cont"][mask].mean()), 3)}

    catch = catch_check(agent, replay, model, feature, twohot_mean) if cfg.env.id == "catch" else None
    print(json.dumps({
        "checkpoint": step, "replay_steps": replay.size,
        "reward+": summary(d["reward"] > 0.5), "reward-": summary(d["reward"] < -0.5),
        "reward0": summary(np.abs(d["reward"]) <= 0.5), "terminal": summary(d["terminal"]),
        "not_terminal": summary(~d["terminal"]),
        "image_mse": round(float(d["image_mse"].mean()), 5),
        "value_at_first": round(float(d["value"][d["first"]].mean()), 3) if d["first"].any() else None,
        "catch_imagined_return": catch,
    }))
    agent.close()


def catch_check(agent, replay, model, feature, twohot_mean, n: int = 64) -> dict:
    """PixelCatch: from real first frames, imagine 9 steps under scripted action sequences and sum the
    predicted rewards. A world model that knows what actions do predicts about +1 for moving toward the
    ball, -1 for moving away, and about -0.6 for the constant policies (which catch 1 ball in 5)."""
    from envs.suites.catch import BALL, COLUMNS, ROWS, cell_bounds

    stream = replay._streams[0]
    lo = stream.count - stream.size
    firsts = [i for i in range(lo, stream.count - 10) if stream.window(i, 1)["is_first"][0]][-n:]
    frames = np.stack([stream.window(i, 1)["image"][0] for i in firsts])
    cols = cell_bounds(COLUMNS, frames.shape[2])
    top = cell_bounds(ROWS, frames.shape[1])[0]
    ball = [next(c for c, (a, b) in enumerate(cols) if (f[top[0]:top[1], a:b] == BALL).all(-1).any()) for f in frames]

    def script(kind: str, target: int) -> list[int]:
        acts, paddle = [], COLUMNS // 2
        for _ in range(ROWS - 1):
            want = {"toward": np.sign(target - paddle), "away": -np.sign(target - paddle) or 1,
                    "left": -1, "stay": 0, "right": 1}[kind]
            paddle = int(np.clip(paddle + want, 0, COLUMNS - 1))
            acts.append(int(want) + 1)  # actions: 0 left, 1 stay, 2 right
        return acts

    @jax.jit
    def imagined_return(params, image, actions, key):
        m = functools.partial(model.apply, {"params": params})
        B = image.shape[0]
        token = m(image, method=DreamerModel.encode)
        deter, stoch = m(B, method=DreamerModel.initial)
        zero = jnp.zeros((B, agent.act_space.n))
        deter, stoch, _, _ = m(deter, stoch, zero, token, jnp.ones(B, bool), key, method=DreamerModel.obs_step)

        def step(carry, x):
            act, k = x
            d, z = m(*carry, jax.nn.one_hot(act, agent.act_space.n), k, method=DreamerModel.img_step)
            return (d, z), twohot_mean(m(feature(d, z), method=DreamerModel.reward))

        _, rewards = jax.lax.scan(step, (deter, stoch), (actions.T, jax.random.split(key, actions.shape[1])))
        return rewards.sum(0)

    from trainer.model import DreamerModel

    out = {}
    for kind in ("toward", "away", "left", "stay", "right"):
        acts = jnp.asarray([script(kind, b) for b in ball], jnp.int32)
        ret = imagined_return(agent.params, jnp.asarray(frames), acts, jax.random.PRNGKey(0))
        out[kind] = round(float(ret.mean()), 3)
    return {"starts": len(firsts), **out}


if __name__ == "__main__":
    main()
