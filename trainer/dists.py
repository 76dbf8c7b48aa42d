"""Distributions and transforms of DreamerV3, as pure functions on arrays.

symlog/symexp squash targets of unknown scale; rewards and values are predicted as a categorical over
255 exponentially spaced bins (two-hot targets, interpolated in raw space); latents are 32 categoricals
with 1 % uniform mixing and straight-through sampling.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "BINS",
    "binary_logp",
    "bounded_normal",
    "categorical_entropy",
    "categorical_kl",
    "kl_balance",
    "normal_entropy",
    "normal_logp",
    "onehot_sample",
    "symexp",
    "symlog",
    "twohot",
    "twohot_loss",
    "twohot_mean",
    "unimix_logits",
]


def symlog(x: jax.Array) -> jax.Array:
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def symexp(x: jax.Array) -> jax.Array:
    return jnp.sign(x) * jnp.expm1(jnp.abs(x))


def _bins(n: int = 255, limit: float = 20.0) -> np.ndarray:
    # Built from one half and mirrored, so the middle bin is exactly 0 and the layout is symmetric.
    half = np.sign(np.linspace(-limit, 0, (n + 1) // 2)) * np.expm1(np.abs(np.linspace(-limit, 0, (n + 1) // 2)))
    return np.concatenate([half, -half[:-1][::-1]]).astype(np.float32)


BINS = _bins()
"""The 255 bin centres: symexp(linspace(-20, 20, 255)), with bin 127 exactly 0."""


def twohot(y: jax.Array, bins: jax.Array = BINS) -> jax.Array:
    """Return float32[..., n]: weights on the two bins around y, by linear interpolation in raw space.

    Values beyond the outermost bins put all weight on the edge bin.
    """
    y = y.astype(jnp.float32)
    bins = jnp.asarray(bins)
    n = bins.shape[0]
    below = jnp.clip(jnp.sum((bins <= y[..., None]).astype(jnp.int32), -1) - 1, 0, n - 1)
    above = jnp.clip(below + 1, 0, n - 1)
    lo, hi = bins[below], bins[above]
    span = jnp.where(above == below, 1.0, hi - lo)
    w_above = jnp.where(above == below, 0.0, jnp.clip((y - lo) / span, 0.0, 1.0))
    w_below = 1.0 - w_above
    return jax.nn.one_hot(below, n) * w_below[..., None] + jax.nn.one_hot(above, n) * w_above[..., None]


def twohot_loss(logits: jax.Array, y: jax.Array, bins: jax.Array = BINS) -> jax.Array:
    """Return the cross-entropy of the logits against the two-hot encoding of y (per element)."""
    return -jnp.sum(twohot(y, bins) * jax.nn.log_softmax(logits.astype(jnp.float32), -1), -1)


def twohot_mean(logits: jax.Array, bins: jax.Array = BINS) -> jax.Array:
    """Return the predicted value: the sum of bin probabilities times bin centres.

    The outer bins are huge (±4.9e8), so summing p_i b_i directly cancels catastrophically: XLA may
    reorder the sum under jit, and a uniform distribution then read -0.16 instead of 0. The bins are
    symmetric (b_left = -b_right), so it sums (p_right - p_left) b_right instead: the probabilities cancel
    before they are scaled, exactly 0 for a symmetric distribution in any summation order.
    """
    probs = jax.nn.softmax(logits.astype(jnp.float32), -1)
    bins = jnp.asarray(bins)
    n = bins.shape[0]
    m = (n - 1) // 2
    return jnp.sum((probs[..., m + 1:] - jnp.flip(probs[..., :m], -1)) * bins[m + 1:], -1)


def unimix_logits(logits: jax.Array, unimix: float) -> jax.Array:
    """Return log-probabilities of (1 - unimix) * softmax(logits) + unimix / classes."""
    logits = logits.astype(jnp.float32)
    if unimix <= 0:
        return jax.nn.log_softmax(logits, -1)
    probs = jax.nn.softmax(logits, -1)
    probs = (1 - unimix) * probs + unimix / logits.shape[-1]
    return jnp.log(probs)


def onehot_sample(key: jax.Array, logp: jax.Array) -> jax.Array:
    """Return a straight-through one-hot sample: its value is one-hot, its gradient that of the probs."""
    probs = jnp.exp(logp)
    index = jax.random.categorical(key, logp, -1)
    hard = jax.nn.one_hot(index, logp.shape[-1], dtype=probs.dtype)
    return hard + probs - jax.lax.stop_gradient(probs)


def categorical_kl(logp: jax.Array, logq: jax.Array) -> jax.Array:
    """Return KL(p || q) over the last axis."""
    return jnp.sum(jnp.exp(logp) * (logp - logq), -1)


def kl_balance(post: jax.Array, prior: jax.Array, free_nats: float) -> tuple[jax.Array, jax.Array]:
    """Return (dyn, rep) KL losses per sample from log-probs [..., latents, classes].

    dyn = max(free, KL(sg(post) || prior)) trains the prior toward the posterior; rep = max(free,
    KL(post || sg(prior))) keeps the posterior predictable. Each KL is summed over the latents; below
    `free_nats` the term is constant, so it has no gradient.
    """
    sg = jax.lax.stop_gradient
    dyn = jnp.sum(categorical_kl(sg(post), prior), -1)
    rep = jnp.sum(categorical_kl(post, sg(prior)), -1)
    return jnp.maximum(free_nats, dyn), jnp.maximum(free_nats, rep)


def allow_all_if_none(legal: jax.Array) -> jax.Array:
    """Return the mask with every action allowed where none is (sampling needs at least one)."""
    return legal | ~jnp.any(legal, -1, keepdims=True)


def masked_unimix_logits(logits: jax.Array, unimix: float, mask: jax.Array) -> jax.Array:
    """Return log-probabilities of (1 - unimix) * softmax over the legal actions + unimix / (legal count).

    Illegal actions (mask False) get log-probability -1e9 (probability exactly 0) and no gradient: masking
    after the mix would let the entropy bonus raise the illegal logits through the mix's normaliser, which
    flattens the policy over the legal ones. A row with no legal action is treated as all legal.
    """
    logits = logits.astype(jnp.float32)
    mask = allow_all_if_none(mask)
    probs = jax.nn.softmax(jnp.where(mask, logits, -jnp.inf), -1)
    if unimix > 0:
        probs = (1 - unimix) * probs + unimix * mask / jnp.sum(mask, -1, keepdims=True)
    return jnp.where(mask, jnp.log(jnp.where(mask, probs, 1.0)), -1e9)


def categorical_entropy(logp: jax.Array) -> jax.Array:
    return -jnp.sum(jnp.exp(logp) * logp, -1)


def binary_logp(logit: jax.Array, target: jax.Array) -> jax.Array:
    """Return the log-likelihood of a (soft) target under Bernoulli(sigmoid(logit))."""
    logit = logit.astype(jnp.float32)
    return target * jax.nn.log_sigmoid(logit) + (1 - target) * jax.nn.log_sigmoid(-logit)


def bounded_normal(out: jax.Array, min_std: float = 0.1, max_std: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """Return (mean, std) from a head output [..., 2 * dims]: mean = tanh(m), std in [min_std, max_std]."""
    m, s = jnp.split(out.astype(jnp.float32), 2, -1)
    return jnp.tanh(m), (max_std - min_std) * jax.nn.sigmoid(s + 2.0) + min_std


def normal_logp(mean: jax.Array, std: jax.Array, x: jax.Array) -> jax.Array:
    """Return the log-density summed over the last axis."""
    return jnp.sum(-0.5 * ((x - mean) / std) ** 2 - jnp.log(std) - 0.5 * jnp.log(2 * jnp.pi), -1)


def normal_entropy(std: jax.Array) -> jax.Array:
    return jnp.sum(0.5 * jnp.log(2 * jnp.pi * std**2) + 0.5, -1)
