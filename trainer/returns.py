"""Returns and their normalisation: lambda-returns on imagined and replayed sequences, and the percentile
return scale of DreamerV3. Time is the leading axis."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["episode_ends", "imagined_lambda_return", "percentile_scale", "replay_lambda_return"]


def imagined_lambda_return(reward: jax.Array, cont: jax.Array, value: jax.Array, lam: float) -> jax.Array:
    """Return R[0..H-1] for H+1 imagined states (index 0 = the start state).

    R[H-1] bootstraps from value[H]:  R[t] = r[t+1] + c[t+1] * ((1 - lam) v[t+1] + lam R[t+1]),
    with R[H] = v[H]. `cont` already holds the discount (it predicts (1 - terminal)(1 - 1/horizon)).
    Args: reward, cont, value: float[H+1, ...].
    """
    def step(ret_next, inputs):
        r, c, v = inputs
        ret = r + c * ((1 - lam) * v + lam * ret_next)
        return ret, ret

    _, rets = jax.lax.scan(step, value[-1], (reward[1:], cont[1:], value[1:]), reverse=True)
    return rets


def replay_lambda_return(reward: jax.Array, is_terminal: jax.Array, is_last: jax.Array, boot: jax.Array,
                         gamma: float, lam: float) -> jax.Array:
    """Return R[0..T-2] on a replayed sequence of T steps, bootstrapped from imagined returns `boot`.

    R[T-1] = boot[T-1];  R[t] = r[t+1] + gamma (1 - term[t+1]) ((1 - lam') boot[t+1] + lam' R[t+1]),
    lam' = lam (1 - last[t+1]), so a return never crosses an episode end.
    Args: reward, is_terminal, is_last, boot: float[T, ...].
    """
    disc = gamma * (1.0 - is_terminal[1:].astype(jnp.float32))
    lams = lam * (1.0 - is_last[1:].astype(jnp.float32))

    def step(ret_next, inputs):
        r, d, lm, b = inputs
        ret = r + d * ((1 - lm) * b + lm * ret_next)
        return ret, ret

    _, rets = jax.lax.scan(step, boot[-1], (reward[1:], disc, lams, boot[1:]), reverse=True)
    return rets


def episode_ends(is_last: jax.Array, is_first: jax.Array) -> jax.Array:
    """Return bool[B, T]: steps after which the episode does not go on within the sequence.

    That is `is_last`, and also a step followed by `is_first` without `is_last` on it: where replay has a
    gap (a run killed mid-episode and resumed, a damaged chunk skipped). Returns must not cross either.
    """
    first_next = jnp.concatenate([is_first[:, 1:], jnp.zeros_like(is_first[:, :1])], axis=1)
    return is_last | first_next


def percentile_scale(lo: jax.Array, hi: jax.Array, returns: jax.Array, rate: float, limit: float):
    """Update the EMAs of the 5th and 95th return percentiles; return (lo, hi, scale = max(limit, hi - lo))."""
    flat = returns.reshape(-1).astype(jnp.float32)
    p5, p95 = jnp.percentile(flat, 5.0), jnp.percentile(flat, 95.0)
    lo = (1 - rate) * lo + rate * p5
    hi = (1 - rate) * hi + rate * p95
    return lo, hi, jnp.maximum(limit, hi - lo)
