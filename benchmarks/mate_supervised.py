"""An upper bound for the mate-in-1 proof: the agent's image encoder (the same CNN as DreamerV3's) plus an MLP,
trained *with the answers* (cross-entropy on the mating moves among the legal ones, the legal-move mask given as
the agent gets it) on the shipped train split, and scored on the held-out test split like `learn.py` scores the
agent (the highest-scored legal move must mate). No world model, no reward to discover: if this does not reach
the proof's 80 %, the RL agent's shortfall is not a bug of its own. Prints one JSON line per evaluation. Not a
test; it asserts nothing.

    .venv/bin/python benchmarks/mate_supervised.py --depth 16 --units 256 --steps 6000
"""

from __future__ import annotations

import argparse
import json
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from envs.chess.mate import MateInOneEnv
from envs.chess.moves import MoveInput
from trainer.nets import MLP, Encoder, Linear


def dataset(split: str, image_size: int, limit: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, legal-move masks and target distributions (uniform over the mating moves) of a split."""
    env = MateInOneEnv(image_size=image_size, action_mode="fromto", split=split)
    images, masks, targets = [], [], []
    for fen in env.positions[:limit or None]:
        env._rng.choice = lambda _, fen=fen: fen  # this position next
        obs, _ = env.reset()
        target = np.zeros(obs["action_mask"].size, np.float32)
        for action in np.flatnonzero(obs["action_mask"]):
            board, move_input = env.board.copy(), MoveInput("fromto")
            board.push(move_input.apply(board, int(action), board.turn))
            target[action] = board.is_checkmate()
        images.append(obs["image"])
        masks.append(obs["action_mask"])
        targets.append(target / max(target.sum(), 1.0))
    return np.stack(images), np.stack(masks), np.stack(targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=16, help="CNN depth (size1m: 4, size12m: 16)")
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--eval-every", type=int, default=500)
    args = parser.parse_args()

    t0 = time.monotonic()
    train, test = dataset("train", args.image_size), dataset("test", args.image_size)
    print(json.dumps({"train_positions": len(train[0]), "test_positions": len(test[0]),
                      "legal_per_position": round(float(train[1].sum(1).mean()), 1),
                      "mates_per_position": round(float((train[2] > 0).sum(1).mean()), 2),
                      "data_s": round(time.monotonic() - t0, 1)}), flush=True)

    class Net(nn.Module):
        @nn.compact
        def __call__(self, image: jax.Array) -> jax.Array:
            return Linear(train[1].shape[1])(MLP(2, args.units)(Encoder(args.depth)(image)))

    net = Net()
    params = net.init(jax.random.PRNGKey(0), train[0][:1])
    opt = optax.adam(args.lr)
    opt_state = opt.init(params)

    def logits(params, image, mask):
        return jnp.where(mask, net.apply(params, image), -1e9)

    @jax.jit
    def step(params, opt_state, image, mask, target):
        def loss_fn(p):
            return -(target * jax.nn.log_softmax(logits(p, image, mask))).sum(-1).mean()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def solved(params, image, mask, target):
        best = logits(params, image, mask).argmax(-1)
        return jnp.take_along_axis(target, best[:, None], 1)[:, 0] > 0

    def solve_rate(data, n: int | None = None) -> float:
        images, masks, targets = (x[:n] for x in data)
        return float(np.mean(np.concatenate([np.asarray(solved(params, images[i:i + 500], masks[i:i + 500],
                                                                    targets[i:i + 500]))
                                              for i in range(0, len(images), 500)])))

    rng, t0 = np.random.default_rng(0), time.monotonic()
    for i in range(1, args.steps + 1):
        idx = rng.integers(0, len(train[0]), args.batch)
        params, opt_state, loss = step(params, opt_state, train[0][idx], train[1][idx], train[2][idx])
        if i % args.eval_every == 0 or i == args.steps:
            print(json.dumps({"step": i, "epochs": round(i * args.batch / len(train[0]), 1),
                              "loss": round(float(loss), 3), "train_solved": round(solve_rate(train, 2000), 3),
                              "test_solved": round(solve_rate(test), 3), "s": round(time.monotonic() - t0)}),
                  flush=True)


if __name__ == "__main__":
    main()
