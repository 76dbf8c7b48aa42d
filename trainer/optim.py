"""DreamerV3's optimiser as an optax chain: per-tensor AGC -> RMS scaling -> momentum -> warm-up lr.

This is LaProp's order (normalise first, then average), as in the official implementation:
    u = g / max(1, |g| / (agc * max(1e-3, |p|)))            per tensor
    nu = beta2 nu + (1 - beta2) u^2;   u = u / (sqrt(nu / (1 - beta2^t)) + eps)
    mu = beta1 mu + (1 - beta1) u;     u = mu / (1 - beta1^t)
    p = p - lr_t u,   lr_t = lr * min(1, t / warmup)   (t counts from 0, so the first update is 0)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from trainer.config import TrainerConfig

__all__ = ["clip_by_agc", "make_optimizer"]


def clip_by_agc(clip: float, pmin: float = 1e-3) -> optax.GradientTransformation:
    """Scale each tensor's update so its norm is at most clip x max(pmin, the tensor's parameter norm)."""

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("clip_by_agc needs the parameters")

        def one(u, p):
            limit = clip * jnp.maximum(pmin, jnp.linalg.norm(p.ravel()))
            return u / jnp.maximum(1.0, jnp.linalg.norm(u.ravel()) / limit)

        return jax.tree.map(one, updates, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(cfg: TrainerConfig) -> optax.GradientTransformation:
    """Return the one optimiser used for every trained module."""
    schedule = optax.linear_schedule(0.0, cfg.lr, cfg.warmup) if cfg.warmup else optax.constant_schedule(cfg.lr)
    return optax.chain(
        clip_by_agc(cfg.agc),
        optax.scale_by_rms(decay=cfg.beta2, eps=cfg.eps, eps_in_sqrt=False, bias_correction=True),
        optax.ema(decay=cfg.beta1, debias=True),
        optax.scale_by_learning_rate(schedule),
    )
