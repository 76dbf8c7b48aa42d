"""The DreamerV3 train step: one pure, jit-compiled `train_step(state, batch, key) -> (state, metrics)`.

`make_train_step(cfg, act_space, image_shape)` binds the static config. The loss reads like the paper:
world model (reconstruction, reward, continue, KL balance with free bits), imagination from every replayed
posterior state, actor (REINFORCE on percentile-scaled advantages + entropy), critic (two-hot lambda-returns
+ slow-critic regulariser), and the critic loss on replayed sequences. A non-finite loss or gradient
leaves the state unchanged and is reported in the metrics.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from trainer.config import TrainerConfig
from trainer.dists import (
    allow_all_if_none,
    binary_logp,
    bounded_normal,
    categorical_entropy,
    categorical_kl,
    kl_balance,
    masked_unimix_logits,
    normal_entropy,
    normal_logp,
    twohot_loss,
    twohot_mean,
    unimix_logits,
)
from trainer.model import ActSpace, DreamerModel, feature
from trainer.optim import make_optimizer
from trainer.returns import episode_ends, imagined_lambda_return, percentile_scale, replay_lambda_return

__all__ = ["TrainState", "act_step", "init_state", "make_train_step", "policy_action", "slow_subtree"]

VALUE_KEYS = ("value_mlp", "value_out")


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    slow: Any
    """The slow critic: an EMA of the value head's parameters."""
    retnorm: jax.Array
    """float32[2]: EMAs of the 5th and 95th percentile of imagined returns."""
    step: jax.Array


def slow_subtree(params: Any) -> dict[str, Any]:
    return {k: params[k] for k in VALUE_KEYS}


def init_state(cfg: TrainerConfig, act_space: ActSpace, image_shape: tuple[int, int, int],
               key: jax.Array) -> TrainState:
    """Return fresh parameters, optimiser state and normalisers."""
    model = DreamerModel(cfg, act_space, tuple(image_shape))
    image = jnp.zeros((1, *image_shape), jnp.uint8)
    action = jnp.zeros((1, act_space.n), jnp.float32)
    k1, k2 = jax.random.split(key)
    params = model.init(k1, image, action, jnp.ones((1,), bool), k2)["params"]
    opt_state = make_optimizer(cfg).init(params)
    return TrainState(params, opt_state, slow_subtree(params), jnp.zeros(2, jnp.float32), jnp.zeros((), jnp.int32))


def policy_action(cfg: TrainerConfig, act_space: ActSpace, out: jax.Array, key: jax.Array,
                  mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Return (action, log-prob, entropy) sampled from the policy head's output.

    Discrete actions come one-hot; an optional bool mask removes illegal actions before sampling.
    """
    if act_space.discrete:
        logp = unimix_logits(out, cfg.unimix) if mask is None else masked_unimix_logits(out, cfg.unimix, mask)
        index = jax.random.categorical(key, logp, -1)
        action = jax.nn.one_hot(index, act_space.n)
        return action, jnp.sum(action * logp, -1), categorical_entropy(logp)
    mean, std = bounded_normal(out)
    action = mean + std * jax.random.normal(key, mean.shape)
    return action, normal_logp(mean, std, action), normal_entropy(std)


def predicted_mask(logits: jax.Array) -> jax.Array:
    """Return the legal actions the mask head predicts (logit > 0); all of them where it predicts none."""
    return allow_all_if_none(logits > 0)


def act_step(model: DreamerModel, params, deter, stoch, prev_action, image, is_first, mask, key):
    """One acting step: filter the observation into the latent, then sample the policy's action.

    Returns (deter, stoch, action). Used by the in-process policy and by the policy process.
    """
    m = functools.partial(model.apply, {"params": params})
    k_obs, k_act = jax.random.split(key)
    token = m(image, method=DreamerModel.encode)
    deter, stoch, _, _ = m(deter, stoch, prev_action, token, is_first, k_obs, method=DreamerModel.obs_step)
    out = m(feature(deter, stoch), method=DreamerModel.policy)
    action, _, _ = policy_action(model.cfg, model.act_space, out, k_act, mask)
    return deter, stoch, action


def _action_logp(cfg: TrainerConfig, act_space: ActSpace, out: jax.Array, action: jax.Array,
                 mask: jax.Array | None = None):
    if act_space.discrete:
        logp = unimix_logits(out, cfg.unimix) if mask is None else masked_unimix_logits(out, cfg.unimix, mask)
        return jnp.sum(action * logp, -1), categorical_entropy(logp)
    mean, std = bounded_normal(out)
    return normal_logp(mean, std, action), normal_entropy(std)


def make_train_step(cfg: TrainerConfig, act_space: ActSpace, image_shape: tuple[int, int, int],
                    mesh: Mesh | None = None):
    """Return the jitted `train_step(state, batch, key) -> (state, metrics)`.

    With a `mesh` (axis 'data'), the batch is split over its devices and the state replicated; XLA
    partitions the step and averages the gradients across devices, so the update equals the one-device
    update on the same batch.

    batch: image uint8[B, T, H, W, C]; action int32[B, T] (discrete) or float32[B, T, A]; reward float32[B, T];
    is_first, is_last, is_terminal bool[B, T]. `action[t]` is the action taken after observing step t.
    With a masked action space also action_mask bool[B, T, n] or, packed as the replay keeps it,
    uint8[B, T, ceil(n / 8)]: the legal actions at step t. The mask head
    learns it; imagination samples the first action from the real mask of its start state and later ones
    from the predicted mask, and the actor's log-probabilities use the same masks (as acting does).
    """
    masked = act_space.discrete and act_space.masked
    model = DreamerModel(cfg, act_space, tuple(image_shape))
    optimizer = make_optimizer(cfg)
    gamma = 1.0 - 1.0 / cfg.horizon

    def loss_fn(params, slow, retnorm, batch, key):
        m = functools.partial(model.apply, {"params": params})
        k_obs, k_img = jax.random.split(key)
        if act_space.discrete:
            actions = jax.nn.one_hot(batch["action"], act_space.n)
        else:
            actions = batch["action"].astype(jnp.float32)
        prev_action = jnp.concatenate([jnp.zeros_like(actions[:, :1]), actions[:, :-1]], 1)
        K = cfg.replay_context
        if K:
            # Replay context: the first K steps only provide the stored latent to start from (no burn-in).
            ok = batch["latent_ok"][:, K - 1]
            init = (jnp.where(ok[:, None], batch["deter"][:, K - 1].astype(jnp.float32), 0.0),
                    jnp.where(ok[:, None, None], jax.nn.one_hot(batch["stoch"][:, K - 1], cfg.classes), 0.0))
            prev_action = prev_action[:, K:]
            batch = {k: batch[k][:, K:] for k in ("image", "action", "reward", "is_first", "is_last", "is_terminal",
                                                  *(("action_mask",) if masked else ()))}
            is_first = batch["is_first"].at[:, 0].set(batch["is_first"][:, 0] | ~ok)  # no latent: start fresh
        else:
            is_first = batch["is_first"].at[:, 0].set(True)  # no replay context: every sequence starts fresh
        B, T = batch["reward"].shape
        assert batch["image"].shape == (B, T, *image_shape), (batch["image"].shape, (B, T, *image_shape))

        # World model
        tokens = m(batch["image"], method=DreamerModel.encode)

        def observe(carry, inputs):
            deter, stoch = carry
            token, act, first, k = inputs
            deter, stoch, post, prior = m(deter, stoch, act, token, first, k, method=DreamerModel.obs_step)
            return (deter, stoch), (deter, stoch, post, prior)

        t_major = lambda x: jnp.swapaxes(x, 0, 1)
        if not K:
            init = m(B, method=DreamerModel.initial)
        _, (deter, stoch, post, prior) = jax.lax.scan(
            observe, init, (t_major(tokens), t_major(prev_action), t_major(is_first), jax.random.split(k_obs, T)))
        deter, stoch, post, prior = (t_major(x) for x in (deter, stoch, post, prior))
        feat = feature(deter, stoch)

        recon = m(deter, stoch, method=DreamerModel.decode)
        image_loss = jnp.sum((recon - batch["image"].astype(jnp.float32) / 255.0) ** 2, (-3, -2, -1))
        reward_loss = twohot_loss(m(feat, method=DreamerModel.reward), batch["reward"])
        cont_target = (1.0 - batch["is_terminal"].astype(jnp.float32)) * gamma
        cont_loss = -binary_logp(m(feat, method=DreamerModel.cont), cont_target)
        sg = jax.lax.stop_gradient
        if masked:
            legal_logits = m(feat, method=DreamerModel.legal)
            real_mask = batch["action_mask"]
            if real_mask.dtype == jnp.uint8:  # packed by the replay, 8 actions a byte (trainer.replay.pack_mask)
                real_mask = jnp.unpackbits(real_mask, axis=-1, count=act_space.n, bitorder="little")
            real_mask = real_mask.astype(bool)
            # Class-balanced: a chess position has ~30 legal moves of 4,096, and a plain sum of per-action losses
            # is minimised by calling everything illegal (recall ~0). The mean loss over the legal actions plus
            # the mean over the illegal ones weighs both classes the same (logit > 0 is the balanced decision)
            # and stays O(1) at any action count: a sum weighted up to illegal/legal (~1,500 in chess) drowned
            # the image and reward losses in the shared representation's gradient.
            legal_f = real_mask.astype(jnp.float32)
            mask_logp = binary_logp(legal_logits, legal_f)
            n_legal = jnp.sum(legal_f, -1)
            mask_loss = -(jnp.sum(mask_logp * legal_f, -1) / jnp.maximum(n_legal, 1.0)
                          + jnp.sum(mask_logp * (1.0 - legal_f), -1) / jnp.maximum(legal_f.shape[-1] - n_legal, 1.0))
            said_legal = legal_logits > 0
            mask_metrics = {  # per-action accuracy is dominated by the many illegal actions: also these
                "mask/acc": jnp.mean(said_legal == real_mask),
                "mask/exact": jnp.mean(jnp.all(said_legal == real_mask, -1)),
                "mask/recall": jnp.sum(said_legal & real_mask) / jnp.maximum(jnp.sum(real_mask), 1),
                "mask/precision": jnp.sum(said_legal & real_mask) / jnp.maximum(jnp.sum(said_legal), 1),
            }
        dyn_loss, rep_loss = kl_balance(post, prior, cfg.free_nats)
        kl = sg(jnp.sum(categorical_kl(post, prior), -1))

        # Imagination from every replayed posterior state (or the last imag_last of each sequence)
        k_start = cfg.imag_last or T
        start_deter = sg(deter[:, -k_start:]).reshape(B * k_start, -1)
        start_stoch = sg(stoch[:, -k_start:]).reshape(B * k_start, cfg.stoch, cfg.classes)
        # The legal actions of each start state are known (replayed); later imagined states use the mask head.
        # (A step with no legal action is an episode's last observation: any action may be imagined there.)
        start_real = real_mask[:, -k_start:].reshape(B * k_start, -1) if masked else None
        start_mask = allow_all_if_none(start_real) if masked else jnp.ones((B * k_start, 1), bool)

        def imagine(carry, k):
            deter_i, stoch_i, mask_i = carry
            k_act, k_dyn = jax.random.split(k)
            out = m(feature(deter_i, stoch_i), method=DreamerModel.policy)
            action, _, _ = policy_action(cfg, act_space, out, k_act, mask_i if masked else None)
            deter_n, stoch_n = m(deter_i, stoch_i, sg(action), k_dyn, method=DreamerModel.img_step)
            mask_n = sg(predicted_mask(m(feature(deter_n, stoch_n), method=DreamerModel.legal))) if masked else mask_i
            return (deter_n, stoch_n, mask_n), (deter_i, stoch_i, sg(action), mask_i)

        H = cfg.imag_horizon
        _, (img_deter, img_stoch, img_action, img_mask) = jax.lax.scan(
            imagine, (start_deter, start_stoch, start_mask), jax.random.split(k_img, H + 1))
        # States s_0..s_H (the scan's outputs are the states each action was taken in) and actions a_0..a_H.
        img_feat = sg(feature(img_deter, img_stoch))  # [H+1, N, F]
        img_reward = sg(twohot_mean(m(img_feat, method=DreamerModel.reward)))
        img_cont = sg(jax.nn.sigmoid(m(img_feat, method=DreamerModel.cont)))
        value_logits = m(img_feat, method=DreamerModel.value)
        value = sg(twohot_mean(value_logits))
        returns = imagined_lambda_return(img_reward, img_cont, value, cfg.lam)  # [H, N]
        weight = sg(jnp.cumprod(img_cont, 0))[:H]
        lo, hi, scale = percentile_scale(retnorm[0], retnorm[1], returns, cfg.retnorm_rate, cfg.retnorm_limit)
        adv = sg((returns - value[:H]) / scale)

        # Actor
        logp, entropy = _action_logp(cfg, act_space, m(img_feat[:H], method=DreamerModel.policy), img_action[:H],
                                     img_mask[:H] if masked else None)
        policy_loss = jnp.mean(weight * -(logp * adv + cfg.actent * entropy))

        # Critic
        slow_m = functools.partial(model.apply, {"params": {**params, **slow}}, method=DreamerModel.value)
        slow_value = sg(twohot_mean(slow_m(img_feat[:H])))
        value_loss = jnp.mean(weight * (twohot_loss(value_logits[:H], sg(returns))
                                        + cfg.slowreg * twohot_loss(value_logits[:H], slow_value)))

        # Critic on replayed sequences, bootstrapped from the imagined returns of each start state
        boot = sg(returns[0]).reshape(B, k_start)
        if k_start < T:
            boot = jnp.concatenate([jnp.zeros((B, T - k_start)), boot], 1)
        ends = episode_ends(batch["is_last"], batch["is_first"])
        repl_ret = replay_lambda_return(t_major(batch["reward"]), t_major(batch["is_terminal"]),
                                        t_major(ends), t_major(boot), gamma, cfg.lam)  # [T-1, B]
        # Only the rows whose return reaches a bootstrap (all T-1, or the last k_start with imag_last): averaging
        # over all T-1 rows with the others masked would shrink the loss by k_start / (T-1), as the official
        # implementation's slice to the last K steps does not.
        first = 0 if k_start >= T else T - k_start - 1
        feat_rows = t_major(feat)[first:-1]
        repl_logits = m(feat_rows, method=DreamerModel.value)
        repl_slow = sg(twohot_mean(slow_m(sg(feat_rows))))
        live = 1.0 - t_major(ends)[first:-1].astype(jnp.float32)
        repval_loss = jnp.mean(live * (twohot_loss(repl_logits, sg(repl_ret[first:]))
                                       + cfg.slowreg * twohot_loss(repl_logits, repl_slow)))

        losses = {
            "image": image_loss.mean(), "reward": reward_loss.mean(), "cont": cont_loss.mean(),
            "dyn": dyn_loss.mean(), "rep": rep_loss.mean(), "policy": policy_loss, "value": value_loss,
            "repval": repval_loss,
        }
        if masked:
            losses["mask"] = mask_loss.mean()
        scales = {"dyn": cfg.dyn_scale, "rep": cfg.rep_scale, "repval": cfg.repval_scale}
        total = sum(scales.get(k, 1.0) * v for k, v in losses.items())
        metrics = {f"loss/{k}": v for k, v in losses.items()}
        # Imagined quantities are averaged with the trajectory weights: states after a predicted episode end
        # (most of them in short episodes) are never trained on and would otherwise dominate the means.
        wmean = lambda x, w=weight: jnp.sum(w[: x.shape[0]] * x) / jnp.maximum(jnp.sum(w[: x.shape[0]]), 1e-6)
        metrics.update({
            "loss/total": total, "wm/kl": kl.mean(),
            "wm/post_ent": categorical_entropy(post).sum(-1).mean(),
            "wm/prior_ent": categorical_entropy(prior).sum(-1).mean(),
            "actor/entropy": wmean(entropy), "ret/mean": wmean(returns), "ret/p5": lo, "ret/p95": hi,
            "ret/scale": scale, "adv/mag": wmean(jnp.abs(adv)), "value/mean": wmean(value[:H]),
            "imag/reward": wmean(img_reward[1:]), "imag/cont": img_cont.mean(), "imag/weight": weight.mean(),
            # From live start states only: the return and the reward the first imagined action is expected to
            # bring (in a one-move game such as mate-in-1, the world model's belief that the actor's move wins).
            "ret/start": wmean(returns[:1]), "imag/reward_first": wmean(img_reward[1:2]),
        })
        if masked:
            metrics.update(mask_metrics)
            # The share of first imagined actions legal under the replayed mask (start states with any legal
            # action), of later ones legal under the predicted mask, and of actions the predicted masks allow.
            has_legal = jnp.any(start_real, -1)
            metrics["imag/legal_start"] = jnp.sum(jnp.sum(img_action[0] * start_real, -1) * has_legal) / \
                jnp.maximum(jnp.sum(has_legal), 1)
            metrics["imag/legal_later"] = jnp.mean(jnp.sum(img_action[1:] * img_mask[1:], -1))
            metrics["imag/legal_frac"] = jnp.mean(img_mask[1:].astype(jnp.float32))
        if K:  # the posterior latents of the replayed steps, for replay to start later sequences from
            metrics["latent/deter"] = jax.lax.stop_gradient(deter).astype(jnp.float16)
            metrics["latent/stoch"] = jnp.argmax(stoch, -1).astype(jnp.int32)
        return total, (jnp.stack([lo, hi]), metrics)

    def train_step(state: TrainState, batch: dict[str, jax.Array], key: jax.Array):
        grads, (retnorm, metrics) = jax.grad(loss_fn, has_aux=True)(
            state.params, state.slow, state.retnorm, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        slow = jax.tree.map(lambda s, p: (1 - cfg.slow_rate) * s + cfg.slow_rate * p, state.slow,
                            slow_subtree(params))
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(metrics["loss/total"]) & jnp.isfinite(grad_norm)
        new = TrainState(params, opt_state, slow, retnorm, state.step + 1)
        # A non-finite loss or gradient keeps the previous state: parameters are never corrupted.
        state = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)
        metrics.update({"opt/grad_norm": grad_norm, "opt/update_norm": optax.tree.norm(updates),
                        "opt/param_norm": optax.tree.norm(params), "opt/finite": finite.astype(jnp.float32)})
        return state, metrics

    if mesh is None:
        return jax.jit(train_step)
    replicated, split = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))
    return jax.jit(train_step, in_shardings=(replicated, split, replicated), out_shardings=(replicated, replicated))
