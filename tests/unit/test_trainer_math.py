"""DreamerV3's math against hand-worked numbers and plain loops: transforms, two-hot, returns, KL
balance with free bits, the percentile return scale, and the optimiser chain."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trainer.config import TrainerConfig
from trainer.dists import (
    BINS,
    categorical_entropy,
    kl_balance,
    masked_unimix_logits,
    symexp,
    symlog,
    twohot,
    twohot_loss,
    twohot_mean,
)
from trainer.optim import clip_by_agc, make_optimizer
from trainer.returns import episode_ends, imagined_lambda_return, percentile_scale, replay_lambda_return


def test_symlog_and_symexp_are_inverse_and_match_hand_values() -> None:
    x = jnp.array([-1e6, -10.0, -1.0, 0.0, 0.5, math.e - 1, 1e6])
    assert np.allclose(symexp(symlog(x)), x, rtol=1e-5)
    assert float(symlog(jnp.array(math.e - 1))) == pytest.approx(1.0)
    assert float(symlog(jnp.array(-(math.e**2 - 1)))) == pytest.approx(-2.0)


def test_bins_layout() -> None:
    assert BINS.shape == (255,) and BINS.dtype == np.float32
    assert BINS[127] == 0.0 and np.array_equal(BINS, -BINS[::-1])
    assert BINS[128] == pytest.approx(0.1705577, rel=1e-5)  # expm1(20 / 127)
    assert BINS[-1] == pytest.approx(4.85165e8, rel=1e-4)  # expm1(20)
    assert np.all(np.diff(BINS) > 0)


def test_twohot_hand_example_and_round_trip() -> None:
    w = np.asarray(twohot(jnp.array(0.1)))
    # 0.1 lies between bin 127 (0) and bin 128 (0.1705577): weights 1 - 0.1/0.17056 and 0.1/0.17056.
    assert np.flatnonzero(w).tolist() == [127, 128]
    assert w[128] == pytest.approx(0.586312, rel=1e-4) and w[127] == pytest.approx(0.413688, rel=1e-4)
    ys = jnp.array([-3e5, -42.0, -1.0, 0.0, 0.37, 7.5, 1234.5])
    weights = twohot(ys)
    assert np.allclose(weights.sum(-1), 1.0)
    assert np.allclose(weights @ BINS, ys, rtol=1e-5)  # interpolation in raw space decodes exactly
    assert np.asarray(twohot(jnp.array(1e12)))[-1] == 1.0 and np.asarray(twohot(jnp.array(-1e12)))[0] == 1.0


def test_twohot_loss_is_minimised_by_the_target_and_mean_decodes_it() -> None:
    y = jnp.array(5.0)
    logits = jnp.log(twohot(y) + 1e-12)
    assert float(twohot_mean(logits)) == pytest.approx(5.0, rel=1e-4)
    assert float(twohot_loss(logits, y)) < float(twohot_loss(jnp.zeros(255), y))
    assert float(twohot_mean(jnp.zeros(255))) == 0.0  # a zero-initialised head predicts exactly 0


@pytest.mark.parametrize("shape", [(255,), (6, 4, 255), (6, 16, 255), (16, 1024, 255)])
def test_twohot_mean_is_exact_under_jit(shape) -> None:
    """XLA may reorder sums under jit; the mean must not cancel catastrophically against the ±4.9e8 bins."""
    assert float(jnp.abs(jax.jit(twohot_mean)(jnp.zeros(shape))).max()) == 0.0
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=shape).astype(np.float32))
    probs = np.asarray(jax.nn.softmax(logits.astype(jnp.float64) if jax.config.jax_enable_x64 else logits, -1),
                       np.float64)
    exact = probs @ BINS.astype(np.float64)
    assert np.allclose(np.asarray(jax.jit(twohot_mean)(logits)), exact, rtol=0, atol=1e-3 * np.abs(exact).max())


def test_imagined_lambda_return_hand_example() -> None:
    # H = 2: R1 = r2 + c2 ((1-l) v2 + l v2) = 2 + 0.5 * 20 = 12;  R0 = 1 + 0.5 (0.5 * 10 + 0.5 * 12) = 6.5
    rew, cont, val = jnp.array([0.0, 1.0, 2.0]), jnp.array([1.0, 0.5, 0.5]), jnp.array([0.0, 10.0, 20.0])
    assert np.allclose(imagined_lambda_return(rew, cont, val, 0.5), [6.5, 12.0])


def test_imagined_lambda_return_matches_a_plain_loop() -> None:
    rng = np.random.default_rng(0)
    H, N = 15, 7
    rew, cont, val = rng.normal(size=(H + 1, N)), rng.uniform(0, 1, (H + 1, N)), rng.normal(size=(H + 1, N))
    lam = 0.95
    expected = np.zeros((H, N))
    nxt = val[H]
    for t in reversed(range(H)):
        expected[t] = rew[t + 1] + cont[t + 1] * ((1 - lam) * val[t + 1] + lam * nxt)
        nxt = expected[t]
    got = imagined_lambda_return(jnp.array(rew), jnp.array(cont), jnp.array(val), lam)
    assert np.allclose(got, expected, atol=1e-5)


def test_replay_lambda_return_matches_a_plain_loop_and_stops_at_episode_ends() -> None:
    rng = np.random.default_rng(1)
    T, B = 12, 3
    rew, boot = rng.normal(size=(T, B)), rng.normal(size=(T, B))
    term = np.zeros((T, B), bool)
    last = np.zeros((T, B), bool)
    term[5, 0] = last[5, 0] = True  # a real termination
    last[8, 1] = True  # a time limit: not terminal, but the return must not cross it
    gamma, lam = 0.997, 0.95
    expected = np.zeros((T - 1, B))
    nxt = boot[T - 1]
    for t in reversed(range(T - 1)):
        lam_t = lam * (1 - last[t + 1])
        expected[t] = rew[t + 1] + gamma * (1 - term[t + 1]) * ((1 - lam_t) * boot[t + 1] + lam_t * nxt)
        nxt = expected[t]
    got = replay_lambda_return(*(jnp.array(x) for x in (rew, term, last, boot)), gamma, lam)
    assert np.allclose(got, expected, atol=1e-5)
    assert np.isclose(got[4, 0], rew[5, 0])  # nothing is bootstrapped through the terminal step
    assert np.isclose(got[7, 1], rew[8, 1] + gamma * boot[8, 1])  # time limit: bootstrap from boot only


def test_returns_do_not_cross_a_replay_gap() -> None:
    """After a resume, a new episode (is_first) may follow a step that never got is_last: cut there too."""
    first = np.zeros((2, 6), bool)
    last = np.zeros((2, 6), bool)
    first[0, 0] = first[0, 3] = True  # row 0: a gap before step 3; row 1: an ordinary is_last at step 4
    last[1, 4] = True
    ends = np.asarray(episode_ends(jnp.array(last), jnp.array(first)))
    assert ends.tolist() == [[False, False, True, False, False, False], [False, False, False, False, True, False]]
    rew = np.arange(6, dtype=np.float32)[:, None]
    boot = np.full((6, 1), 100.0, np.float32)
    got = replay_lambda_return(jnp.array(rew), jnp.zeros((6, 1), bool), jnp.array(ends[:1].T), jnp.array(boot),
                               0.9, 0.95)
    # R[1] = r[2] + gamma * boot[2]: nothing of the next episode (rewards 3.., its bootstrap) leaks in.
    assert np.isclose(got[1, 0], 2.0 + 0.9 * 100.0)


def test_kl_balance_hand_example_and_free_bits() -> None:
    p = jnp.log(jnp.array([[0.5, 0.5]]))
    q = jnp.log(jnp.array([[0.9, 0.1]]))
    # KL(p||q) = 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1) = 0.510826
    dyn, rep = kl_balance(jnp.tile(p, (32, 1)), jnp.tile(q, (32, 1)), free_nats=1.0)
    assert float(dyn) == pytest.approx(32 * 0.510826, rel=1e-5) and float(rep) == float(dyn)
    dyn1, _ = kl_balance(p, q, free_nats=1.0)
    assert float(dyn1) == 1.0  # below the free bits: clipped
    g_post, g_prior = jax.grad(lambda a, b: kl_balance(a, b, 1.0)[0], argnums=(0, 1))(p, q)
    assert not np.any(g_post) and not np.any(g_prior)  # no gradient below the free bits
    g_post, g_prior = jax.grad(lambda a, b: kl_balance(a, b, 0.0)[0], argnums=(0, 1))(p, q)
    assert not np.any(g_post) and np.any(g_prior)  # dyn trains only the prior
    g_post, g_prior = jax.grad(lambda a, b: kl_balance(a, b, 0.0)[1], argnums=(0, 1))(p, q)
    assert np.any(g_post) and not np.any(g_prior)  # rep trains only the posterior


def test_percentile_scale_hand_example() -> None:
    returns = jnp.arange(100.0)
    lo, hi, scale = percentile_scale(jnp.array(0.0), jnp.array(0.0), returns, rate=0.01, limit=1.0)
    # numpy's linear percentiles of 0..99: P5 = 4.95, P95 = 94.05; one EMA step at rate 0.01 from 0
    assert float(lo) == pytest.approx(0.0495) and float(hi) == pytest.approx(0.9405)
    assert float(scale) == 1.0  # the limit: small return ranges are not scaled up
    lo, hi, scale = percentile_scale(jnp.array(0.0), jnp.array(0.0), returns, rate=1.0, limit=1.0)
    assert float(scale) == pytest.approx(89.1)


def test_agc_clips_each_tensor_relative_to_its_norm() -> None:
    agc = clip_by_agc(0.3)
    params = {"w": jnp.array([3.0, 4.0]), "z": jnp.zeros(2)}
    grads = {"w": jnp.array([30.0, 40.0]), "z": jnp.array([1.0, 0.0])}
    out, _ = agc.update(grads, agc.init(params), params)
    assert np.allclose(out["w"], [0.9, 1.2])  # |g| = 50 > 0.3 * 5: scaled to norm 1.5
    assert np.allclose(out["z"], [3e-4, 0.0])  # zero params: limited by pmin 1e-3 * 0.3
    small = {"w": jnp.array([0.6, 0.8]), "z": jnp.zeros(2)}
    out, _ = agc.update(small, agc.init(params), params)
    assert np.allclose(out["w"], [0.6, 0.8])  # within the limit: unchanged


def test_optimizer_chain_hand_worked_steps() -> None:
    cfg = TrainerConfig(lr=4e-5, warmup=1000)
    opt = make_optimizer(cfg)
    params = jnp.array([3.0, 4.0])
    grad = jnp.array([0.6, -0.8])
    state = opt.init(params)
    # Step 1: RMS-normalised update = sign(g); momentum debiased = sign(g); lr at count 0 is exactly 0.
    upd, state = opt.update(grad, state, params)
    assert np.allclose(upd, [0.0, 0.0])
    # Step 2: still sign(g) after both bias corrections; lr = 4e-5 * 1 / 1000 = 4e-8.
    upd, state = opt.update(grad, state, params)
    assert np.allclose(upd, [-4e-8, 4e-8], rtol=1e-4)
    # A gradient 10x larger gives the same steps: RMS scaling makes the update scale-free.
    state10 = opt.init(params)
    _, state10 = opt.update(10 * grad, state10, params)
    upd10, _ = opt.update(10 * grad, state10, params)
    assert np.allclose(upd10, upd, rtol=1e-4)


def test_masked_unimix_mixes_over_the_legal_actions_only() -> None:
    logits = jnp.array([[3.0, 0.0, 8.0, 8.0, -1.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    mask = jnp.array([[True, True, False, False, False], [False] * 5])  # the second row has no legal action
    probs = np.exp(np.asarray(masked_unimix_logits(logits, 0.01, mask)))
    legal = np.exp([3.0, 0.0]) / np.exp([3.0, 0.0]).sum()
    np.testing.assert_allclose(probs[0], [*(0.99 * legal + 0.01 / 2), 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(probs[1], 0.99 * np.exp(np.arange(1.0, 6.0)) / np.exp(np.arange(1.0, 6.0)).sum()
                               + 0.01 / 5, rtol=1e-5)  # no legal action: all allowed
    # The entropy bonus cannot push illegal logits up (which would flatten the legal choice through the mix).
    grad = jax.grad(lambda x: categorical_entropy(masked_unimix_logits(x, 0.01, mask)).sum())(logits)
    assert np.all(np.asarray(grad)[0, 2:] == 0) and np.all(np.isfinite(np.asarray(grad)))
