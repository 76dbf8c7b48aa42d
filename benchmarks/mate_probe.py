"""Mate-in-1: where does learning stop? A diagnostic of a stopped run that prints figures (not a test).

For fresh positions of a split it tries every legal move on a copy of the env (so it knows which ones
mate) and asks the run's newest checkpoint:
- the actor: the share of positions its sampled move solves, and its probability mass on mating moves;
- the world model's prior (imagination): the reward it predicts after each legal move, how well that ranks
  mating moves above the others within a position (AUC, 0.5 = no idea), and the solve rate of picking the
  move with the highest predicted reward;
- the reward head on the real next frame (the posterior after each move): the same AUC and solve rate;
- the calibration: the predicted reward of the actor's move next to the real solve rate.
With `--recon PNG` it also writes real first frames next to their reconstructions from the first step's
latent (at an episode start the latent's deterministic part is a constant: the board must pass through
the stochastic part alone, `stoch` categoricals of `classes` classes).

    .venv/bin/python benchmarks/mate_probe.py --logdir /tmp/learn/agent-0 --positions 200 --split test
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a random positive scores above a random negative), ties counted half."""
    return float(np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", type=Path, required=True)
    parser.add_argument("--positions", type=int, default=200)
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument("--recon", type=Path, help="write 4 first frames and their reconstructions to this PNG")
    args = parser.parse_args()

    import yaml

    import envs
    from app.config import resolve
    from app.training import load_policy
    from trainer.dists import twohot_mean
    from trainer.model import DreamerModel, feature

    # Read-only: the run dir's config is not rewritten (the probe only changes the split it plays).
    saved = yaml.safe_load((args.logdir / "config.yaml").read_text())
    cfg = resolve([], [("env.mate.split", args.split)], environ={}, base=saved)
    if cfg.env.id != "chess-mate-in-1":
        raise SystemExit(f"{args.logdir} trains {cfg.env.id}, not chess-mate-in-1")
    if cfg.env.mate.action_mode != "fromto" or cfg.env.mate.underpromotion:
        raise SystemExit("the probe needs one action per move (env.mate.action_mode: fromto, no underpromotion "
                         "picker): with clicks, one action only selects a square and no single action mates")
    env = envs.make_from_config(cfg.env)
    # Checkpoints are opened read-only (the run may still be training); JAX may add to
    # its compile cache (run.compile_cache).
    agent, step = load_policy(cfg, env.observation_space, env.action_space, args.logdir)
    if step is None:
        raise SystemExit(f"{args.logdir} has no readable checkpoint")
    n_actions = agent.act_space.n
    m = functools.partial(agent.model.apply, {"params": agent.params})

    @jax.jit
    def first_step(image, key):
        """The latent of an episode's first frame, the policy's logits and the decoded frame."""
        token = m(image[None], method=DreamerModel.encode)
        deter, stoch = m(1, method=DreamerModel.initial)
        deter, stoch, _, _ = m(deter, stoch, jnp.zeros((1, n_actions)), token, jnp.ones(1, bool), key,
                               method=DreamerModel.obs_step)
        return deter, stoch, m(feature(deter, stoch), method=DreamerModel.policy)[0], \
            m(deter, stoch, method=DreamerModel.decode)[0]

    @jax.jit
    def judge(deter, stoch, actions, images, key):
        """Predicted reward after each action: from the prior (mean of 4 samples) and from the posterior of
        the real next frame."""
        k = actions.shape[0]
        deter, stoch = jnp.repeat(deter, k, 0), jnp.repeat(stoch, k, 0)

        def prior(key):
            d, z = m(deter, stoch, actions, key, method=DreamerModel.img_step)
            return twohot_mean(m(feature(d, z), method=DreamerModel.reward))

        k_prior, k_post = jax.random.split(key)
        token = m(images, method=DreamerModel.encode)
        d, z, _, _ = m(deter, stoch, actions, token, jnp.zeros(k, bool), k_post, method=DreamerModel.obs_step)
        return jax.vmap(prior)(jax.random.split(k_prior, 4)).mean(0), \
            twohot_mean(m(feature(d, z), method=DreamerModel.reward))

    rng = np.random.default_rng(0)
    rows: dict[str, list] = {k: [] for k in ("actor_win", "actor_mass", "actor_pred", "prior_win", "post_win",
                                            "prior_auc", "post_auc", "random", "legal", "mates")}
    pred_mate, pred_other, recon = [], [], []
    for i in range(args.positions):
        obs, _ = env.reset(seed=(10_000_000 if args.split == "test" else 0) + i)
        legal = np.flatnonzero(obs["action_mask"])
        wins, nexts = np.zeros(n_actions, bool), []
        for a in legal:
            probe = copy.deepcopy(env)
            next_obs, reward, *_ = probe.step(int(a))
            wins[a] = reward > 0
            nexts.append(next_obs["image"])
        deter, stoch, logits, decoded = first_step(jnp.asarray(obs["image"]), jax.random.PRNGKey(i))
        # Fixed shapes for jit: pad the moves to a multiple of 64.
        pad = -len(legal) % 64
        actions = jax.nn.one_hot(np.concatenate([legal, np.zeros(pad, int)]), n_actions)
        images = np.concatenate([np.stack(nexts), np.zeros((pad, *nexts[0].shape), np.uint8)])
        prior_r, post_r = (np.asarray(x)[: len(legal)] for x in judge(deter, stoch, actions,
                                                                       jnp.asarray(images), jax.random.PRNGKey(i)))
        logits = np.where(obs["action_mask"], np.asarray(logits, np.float64), -np.inf)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        move = rng.choice(n_actions, p=p)
        mate = wins[legal]
        rows["actor_win"].append(wins[move])
        rows["actor_mass"].append(p[wins].sum())
        rows["actor_pred"].append(prior_r[np.searchsorted(legal, move)])
        rows["prior_win"].append(mate[np.argmax(prior_r)])
        rows["post_win"].append(mate[np.argmax(post_r)])
        rows["random"].append(mate.mean())
        rows["legal"].append(len(legal))
        rows["mates"].append(mate.sum())
        if mate.any() and not mate.all():
            rows["prior_auc"].append(auc(prior_r[mate], prior_r[~mate]))
            rows["post_auc"].append(auc(post_r[mate], post_r[~mate]))
        pred_mate += list(prior_r[mate])
        pred_other += list(prior_r[~mate])
        if args.recon and i < 4:
            recon.append(np.concatenate([obs["image"], (np.clip(np.asarray(decoded), 0, 1) * 255).astype(np.uint8)], 1))
    mean = lambda k, scale=1.0: round(scale * float(np.mean(rows[k])), 3) if rows[k] else None
    t = cfg.trainer
    print(json.dumps({
        "checkpoint": step, "split": args.split, "positions": args.positions,
        "first_step_latent_bits": round(t.stoch * math.log2(t.classes), 1),
        "legal_moves": mean("legal"), "mating_moves": mean("mates"),
        "random_solve_%": mean("random", 100),
        "actor_solve_%": mean("actor_win", 100), "actor_mass_on_mates": mean("actor_mass"),
        "actor_move_predicted_reward": mean("actor_pred"),
        "prior_best_move_solve_%": mean("prior_win", 100), "prior_auc": mean("prior_auc"),
        "prior_reward_mating": round(float(np.mean(pred_mate)), 3) if pred_mate else None,
        "prior_reward_other": round(float(np.mean(pred_other)), 3) if pred_other else None,
        "posterior_best_move_solve_%": mean("post_win", 100), "posterior_auc": mean("post_auc"),
    }))
    if recon:
        import cv2

        image = np.concatenate(recon, 0)[..., ::-1]
        cv2.imwrite(str(args.recon), cv2.resize(image, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST))
    agent.close()


if __name__ == "__main__":
    main()
