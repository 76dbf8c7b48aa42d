"""DreamerV3's networks as one flax module: encoder, RSSM with a block-diagonal GRU, decoder, heads.

Methods are called one at a time through `apply(..., method=...)`, so the train step can run them
inside `lax.scan` loops. A latent state is (deter float[..., deter], stoch one-hot float[..., stoch,
classes]); the feature the heads see is concat(deter, flatten(stoch)).
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from trainer.config import TrainerConfig, compute_dtype
from trainer.dists import onehot_sample, unimix_logits
from trainer.nets import MLP, BlockLinear, Decoder, Encoder, Linear, Norm

__all__ = ["ActSpace", "DreamerModel", "count_parameters", "feature"]


@dataclass(frozen=True)
class ActSpace:
    """The agent's action space: `n` discrete actions, or `n` continuous dims in [-1, 1].

    `masked`: the env marks its legal actions (an `action_mask` observation, e.g. chess). The world model
    then also learns to predict the mask, so imagined states have legal actions too (see dreamer.py).
    """

    discrete: bool
    n: int
    masked: bool = False


def feature(deter: jax.Array, stoch: jax.Array) -> jax.Array:
    """Return the heads' input: concat(deter, flattened stoch)."""
    return jnp.concatenate([deter, stoch.reshape(*stoch.shape[:-2], -1)], -1)


class DreamerModel(nn.Module):
    cfg: TrainerConfig
    act_space: ActSpace
    image_shape: tuple[int, int, int]

    def setup(self) -> None:
        c = self.cfg
        dt = jnp.dtype(compute_dtype(c))
        self.dtype = dt
        self.encoder = Encoder(c.depth, dtype=dt)
        self.decoder = Decoder(self.image_shape, c.depth, c.units, blocks=c.blocks, dtype=dt)
        # RSSM core inputs: one Linear -> Norm -> SiLU each for deter, stoch and action.
        self.in_deter = Linear(c.hidden, dtype=dt)
        self.in_stoch = Linear(c.hidden, dtype=dt)
        self.in_action = Linear(c.hidden, dtype=dt)
        self.in_norms = [Norm(), Norm(), Norm()]
        self.dyn_hidden = BlockLinear(c.deter, c.blocks, dtype=dt)
        self.dyn_norm = Norm()
        self.dyn_gates = BlockLinear(3 * c.deter, c.blocks, dtype=dt)
        self.prior_mlp = MLP(2, c.hidden, dtype=dt)
        self.prior_out = Linear(c.stoch * c.classes, dtype=dt)
        self.post_mlp = MLP(1, c.hidden, dtype=dt)
        self.post_out = Linear(c.stoch * c.classes, dtype=dt)
        # Heads
        self.reward_mlp = MLP(1, c.units, dtype=dt)
        self.reward_out = Linear(255, outscale=0.0, dtype=dt)
        self.cont_mlp = MLP(1, c.units, dtype=dt)
        self.cont_out = Linear(1, dtype=dt)
        self.value_mlp = MLP(3, c.units, dtype=dt)
        self.value_out = Linear(255, outscale=0.0, dtype=dt)
        self.policy_mlp = MLP(3, c.units, dtype=dt)
        out = self.act_space.n if self.act_space.discrete else 2 * self.act_space.n
        self.policy_out = Linear(out, outscale=0.01, dtype=dt)
        if self.act_space.masked:
            self.mask_mlp = MLP(1, c.units, dtype=dt)
            self.mask_out = Linear(self.act_space.n, dtype=dt)

    # -- latent dynamics ----------------------------------------------------------------------------------

    def initial(self, batch: int) -> tuple[jax.Array, jax.Array]:
        c = self.cfg
        return jnp.zeros((batch, c.deter), jnp.float32), jnp.zeros((batch, c.stoch, c.classes), jnp.float32)

    def core(self, deter: jax.Array, stoch: jax.Array, action: jax.Array) -> jax.Array:
        """Return the next deter from (deter, stoch, action) through the block-diagonal GRU."""
        c, g = self.cfg, self.cfg.blocks
        action = action / jax.lax.stop_gradient(jnp.maximum(1.0, jnp.abs(action)))
        inputs = (self.in_deter(deter), self.in_stoch(stoch.reshape(*stoch.shape[:-2], -1)),
                  self.in_action(action))
        x = jnp.concatenate([nn.silu(n(v)) for n, v in zip(self.in_norms, inputs, strict=True)], -1)
        lead = deter.shape[:-1]
        groups = jnp.broadcast_to(x[..., None, :], (*lead, g, x.shape[-1]))
        chunks = deter.reshape(*lead, g, c.deter // g).astype(x.dtype)
        x = jnp.concatenate([chunks, groups], -1).reshape(*lead, -1)
        x = nn.silu(self.dyn_norm(self.dyn_hidden(x)))
        gates = self.dyn_gates(x).reshape(*lead, g, 3, c.deter // g)
        reset, cand, update = (gates[..., i, :].reshape(*lead, c.deter).astype(jnp.float32) for i in range(3))
        reset = jax.nn.sigmoid(reset)
        cand = jnp.tanh(reset * cand)
        update = jax.nn.sigmoid(update - 1.0)
        return update * cand + (1 - update) * deter

    def prior(self, deter: jax.Array) -> jax.Array:
        """Return log-probs [..., stoch, classes] of the prior (with unimix)."""
        c = self.cfg
        logits = self.prior_out(self.prior_mlp(deter)).reshape(*deter.shape[:-1], c.stoch, c.classes)
        return unimix_logits(logits, c.unimix)

    def posterior(self, deter: jax.Array, token: jax.Array) -> jax.Array:
        c = self.cfg
        x = self.post_mlp(jnp.concatenate([deter.astype(self.dtype), token.astype(self.dtype)], -1))
        logits = self.post_out(x).reshape(*deter.shape[:-1], c.stoch, c.classes)
        return unimix_logits(logits, c.unimix)

    def obs_step(self, deter, stoch, action, token, is_first, key):
        """One filtering step; returns (deter, stoch sample, posterior logp, prior logp).

        `is_first` zeroes the previous state and action before the step, as at an episode start.
        """
        keep = 1.0 - is_first.astype(jnp.float32)
        deter, stoch, action = deter * keep[..., None], stoch * keep[..., None, None], action * keep[..., None]
        deter = self.core(deter, stoch, action)
        post = self.posterior(deter, token)
        return deter, onehot_sample(key, post), post, self.prior(deter)

    def img_step(self, deter, stoch, action, key):
        """One imagined step from the prior; returns (deter, stoch sample)."""
        deter = self.core(deter, stoch, action)
        return deter, onehot_sample(key, self.prior(deter))

    # -- observation --------------------------------------------------------------------------------------

    def encode(self, image: jax.Array) -> jax.Array:
        return self.encoder(image)

    def decode(self, deter: jax.Array, stoch: jax.Array) -> jax.Array:
        return self.decoder(deter, stoch)

    # -- heads (input: feature) ---------------------------------------------------------------------------

    def reward(self, feat: jax.Array) -> jax.Array:
        return self.reward_out(self.reward_mlp(feat)).astype(jnp.float32)

    def cont(self, feat: jax.Array) -> jax.Array:
        return self.cont_out(self.cont_mlp(feat))[..., 0].astype(jnp.float32)

    def value(self, feat: jax.Array) -> jax.Array:
        return self.value_out(self.value_mlp(feat)).astype(jnp.float32)

    def policy(self, feat: jax.Array) -> jax.Array:
        return self.policy_out(self.policy_mlp(feat)).astype(jnp.float32)

    def legal(self, feat: jax.Array) -> jax.Array:
        """Return logits [..., n] of each action being legal in this state (masked action spaces only)."""
        return self.mask_out(self.mask_mlp(feat)).astype(jnp.float32)

    def __call__(self, image, action, is_first, key):
        """Touch every module once (used only to initialise the parameters)."""
        token = self.encode(image)
        deter, stoch = self.initial(image.shape[0])
        deter, stoch, _, _ = self.obs_step(deter, stoch, action, token, is_first, key)
        feat = feature(deter, stoch)
        legal = self.legal(feat) if self.act_space.masked else None
        return (self.decode(deter, stoch), self.reward(feat), self.cont(feat), self.value(feat), self.policy(feat),
                legal, self.img_step(deter, stoch, action, key))


def count_parameters(cfg: TrainerConfig, act_space: ActSpace, image_shape: tuple[int, int, int]) -> int:
    """Return the number of trained parameters, from shapes only (nothing is allocated)."""
    model = DreamerModel(cfg, act_space, tuple(image_shape))
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, *image_shape), jnp.uint8),
                            jnp.zeros((1, act_space.n)), jnp.ones((1,), bool), jax.random.PRNGKey(1))
    return sum(x.size for x in jax.tree.leaves(shapes))
