"""The DreamerV3 agent as the app uses it: acting, training, dreaming, and its checkpointable state.

`DreamerAgent` owns the train state and a parameter snapshot for acting. `policy(obs, state)` and the
visualisation calls (`imagine`, `open_loop`) only read the latest published snapshot, so acting never
waits for an update; `train(batch)` runs one jitted step and publishes the new parameters.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from trainer.config import TrainerConfig, compute_dtype
from trainer.dists import allow_all_if_none, twohot_mean
from trainer.dreamer import TrainState, act_step, init_state, make_train_step, policy_action, predicted_mask
from trainer.errors import TrainerError
from trainer.model import ActSpace, DreamerModel, feature
from trainer.replay import packed_size

__all__ = ["DreamerAgent", "PolicyState", "act_space_of", "data_mesh"]

log = logging.getLogger(__name__)


def data_mesh(batch_size: int) -> Mesh | None:
    """Return a 1-D 'data' mesh over every device when there is more than one, else None."""
    devices = jax.devices()
    if len(devices) < 2:
        return None
    if batch_size % len(devices):
        raise TrainerError(f"trainer.batch_size = {batch_size} must be divisible by the {len(devices)} devices "
                           "to split it over them (or set trainer.data_parallel: false)")
    log.info("data-parallel training over %d devices: %s", len(devices), ", ".join(map(str, devices)))
    return Mesh(np.array(devices), ("data",))


def act_space_of(space: gym.Space, obs_space: gym.Space | None = None) -> ActSpace:
    """Return the agent's view of a Gymnasium action space (Discrete, or a Box in [-1, 1]); masked when the
    observations (`obs_space`) carry an `action_mask` of the legal discrete actions."""
    masked = "action_mask" in getattr(obs_space, "spaces", {})
    if isinstance(space, gym.spaces.Discrete):
        return ActSpace(True, int(space.n), masked)
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return ActSpace(False, int(space.shape[0]))
    raise TrainerError(f"DreamerV3 here supports Discrete and 1-D Box action spaces, not {space}")


class PolicyState(NamedTuple):
    """An actor's recurrent state: the latent (deter, stoch) and the previous action, batched over envs."""

    deter: jax.Array
    stoch: jax.Array
    action: jax.Array


class DreamerAgent:
    """DreamerV3 for one env's observation and action spaces."""

    is_placeholder = False

    def __init__(self, cfg: TrainerConfig, obs_space: gym.spaces.Dict, action_space: gym.Space) -> None:
        self.cfg = cfg
        self.image_shape = tuple(obs_space["image"].shape)
        self.act_space = act_space_of(action_space, obs_space)
        self.action_space = action_space
        self.model = DreamerModel(cfg, self.act_space, self.image_shape)
        self._key = jax.random.PRNGKey(cfg.seed)
        self._lock = threading.Lock()
        t0 = time.monotonic()
        self._key, k, self._train_key = jax.random.split(self._key, 3)
        self.multiprocess = jax.process_count() > 1
        if self.multiprocess and not (cfg.data_parallel and cfg.policy_process):
            raise TrainerError("training over several processes needs trainer.data_parallel and "
                               "trainer.policy_process (both on by default)")
        self.mesh = data_mesh(cfg.batch_size) if cfg.data_parallel else None
        self.local_batch_size = cfg.batch_size // jax.process_count()
        """Sequences this process samples from its own replay per update (its share of batch_size)."""
        # The same seed in every process gives the same initial parameters everywhere.
        self.state: TrainState = self._place(jax.jit(init_state, static_argnums=(0, 1, 2))(cfg, self.act_space,
                                                                                            self.image_shape, k))
        self.params = self._local(self.state.params)  # the snapshot actors and the overlay read
        self.param_count = int(sum(x.size for x in jax.tree.leaves(self.state.params)))
        self._train_step = make_train_step(cfg, self.act_space, self.image_shape, self.mesh)
        self._policy_step = jax.jit(self._policy_fn)
        self._imagine = jax.jit(self._imagine_fn, static_argnums=(2,))
        self._open_loop = jax.jit(self._open_loop_fn, static_argnums=(3,))
        self._server = None
        self._unpublished = False  # the learner holds parameters the policy process has not been sent
        log.info("DreamerV3 agent: %s parameters, built in %.1fs; JAX %s on %s, compute dtype %s",
                 f"{self.param_count:,}", time.monotonic() - t0, jax.__version__,
                 ", ".join(str(d) for d in jax.devices()), compute_dtype(cfg))
        if jax.default_backend() == "cpu" and os.path.exists("/dev/nvidiactl"):
            log.warning("an NVIDIA GPU is present but JAX runs on the CPU: install JAX's CUDA build "
                        "(`make setup CUDA=1`, or `pip install -e '.[cuda]'`)")

    def _local(self, params: Any) -> Any:
        """Parameters this process can compute with alone: across processes, a host copy of the replicas."""
        return jax.device_get(params) if self.multiprocess else params

    @staticmethod
    def device_memory() -> dict[str, float] | None:
        """GB in use and at peak on the first local device, or None where JAX does not report it (a CPU)."""
        stats = jax.local_devices()[0].memory_stats()
        if not stats or "bytes_in_use" not in stats:
            return None
        out = {"in_use_gb": round(stats["bytes_in_use"] / 1e9, 2),
               "peak_gb": round(stats.get("peak_bytes_in_use", stats["bytes_in_use"]) / 1e9, 2)}
        if stats.get("bytes_limit"):
            out["limit_gb"] = round(stats["bytes_limit"] / 1e9, 2)
        return out

    def host_template(self) -> Any:
        """The train state's shapes and dtypes placed on the host's CPU device, without copying anything: a
        checkpoint restored against it lands in host memory, not beside the live state on a GPU."""
        cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=cpu), self.state)

    def host_state(self) -> TrainState:
        """The train state as host arrays (what process 0 checkpoints when training spans processes)."""
        return jax.device_get(self.state)

    def _place(self, state: TrainState) -> TrainState:
        """Put a train state on this agent's devices: replicated over the mesh, else committed to the one device.
        A fresh state and a restored one then have the same placement, so the train step compiled for one is
        the persistent compile cache's entry for the other too (an uncommitted fresh state missed it at the
        first resume)."""
        if self.mesh is not None:
            return jax.device_put(state, NamedSharding(self.mesh, PartitionSpec()))
        return jax.device_put(state, jax.local_devices()[0])

    def load_state(self, state: TrainState) -> None:
        """Adopt a restored train state (placed on this agent's devices) and publish its parameters."""
        state = self._place(state)
        self.state, self.params = state, self._local(state.params)
        if self._server is not None:
            self._server.sync(self.params)
            self._unpublished = False

    # -- keys ---------------------------------------------------------------------------------------------

    def _next_key(self) -> jax.Array:
        with self._lock:
            self._key, k = jax.random.split(self._key)
        return k

    def _next_train_key(self) -> jax.Array:
        """Keys of the train step: their own sequence, equal in every process whatever each one's acting draws."""
        self._train_key, k = jax.random.split(self._train_key)
        return k

    # -- acting -------------------------------------------------------------------------------------------

    def initial_state(self, batch: int = 1) -> PolicyState:
        c = self.cfg
        return PolicyState(jnp.zeros((batch, c.deter)), jnp.zeros((batch, c.stoch, c.classes)),
                           jnp.zeros((batch, self.act_space.n)))

    def _policy_fn(self, params, state: PolicyState, image, is_first, mask, key):
        deter, stoch, action = act_step(self.model, params, state.deter, state.stoch, state.action, image,
                                        is_first, mask, key)
        return PolicyState(deter, stoch, action), action

    def start_policy_process(self) -> None:
        """Move acting into a child process (see trainer.policy_server), which compiles its policy step now."""
        from trainer.policy_server import PolicyServer

        self._server = PolicyServer(self.cfg, self.act_space, self.image_shape, jax.device_get(self.params),
                                    seed=self.cfg.seed + 1)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def policy(self, obs: dict[str, np.ndarray], state: PolicyState | None, is_first: bool = False,
               params: Any = None):
        """Return (env action, new state) for one observation; `state=None` starts an episode.

        `params` (e.g. a snapshot being evaluated) acts with those parameters, in this process, beside the
        live actor; by default the latest parameters act (in the policy process when there is one).
        """
        if state is None:
            state, is_first = self.initial_state(), True
        mask = obs.get("action_mask")
        if self._server is not None and params is None:
            action, deter, stoch = self._server.act(obs["image"], mask if self.act_space.discrete else None,
                                                    is_first)
            state = PolicyState(deter, stoch, action[None])
        else:
            mask = jnp.asarray(mask[None], bool) if mask is not None and self.act_space.discrete else None
            state, action = self._policy_step(self.params if params is None else params, state,
                                              jnp.asarray(obs["image"][None]), jnp.asarray([is_first]), mask,
                                              self._next_key())
            action = np.asarray(action[0])
        if self.act_space.discrete:
            return int(action.argmax()), state
        low, high = self.action_space.low, self.action_space.high
        return np.clip(action, -1, 1).astype(self.action_space.dtype) * (high - low) / 2 + (high + low) / 2, state

    def latent_to_stored(self, state: PolicyState) -> dict[str, np.ndarray]:
        """Return an acting latent as replay stores it (for replay context): deter, class indices, latent_ok."""
        return {"deter": np.asarray(state.deter[0], np.float16),
                "stoch": np.asarray(state.stoch[0]).argmax(-1).astype(np.uint16), "latent_ok": True}

    def env_action_to_stored(self, action: Any) -> np.ndarray:
        """Return the action as the replay stores it (index for discrete, [-1, 1] vector for continuous)."""
        if self.act_space.discrete:
            return np.int32(action)
        low, high = self.action_space.low, self.action_space.high
        return ((np.asarray(action, np.float32) - (high + low) / 2) / ((high - low) / 2)).astype(np.float32)

    # -- learning -----------------------------------------------------------------------------------------

    def train(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """Run one update, then publish the new parameters to actors; returns the metrics as device arrays.

        Blocks until the new parameters exist: publishing them earlier (JAX dispatches asynchronously)
        would make the actor's next policy step wait for the whole update.
        """
        if self.multiprocess:
            from trainer.distributed import global_batch

            batch = global_batch(self.mesh, batch)
        state, metrics = self._train_step(self.state, batch, self._next_train_key())
        jax.block_until_ready(state.params)
        self.state = state
        self.params = self._local(state.params)
        server = self._server
        if server is not None and time.monotonic() - server.last_sync >= self.cfg.policy_sync_s:
            server.sync(self.params)  # copied to the host on the sender's thread, not the learner's
            self._unpublished = False
        else:
            self._unpublished = server is not None
        return metrics

    def publish_pending(self) -> bool:
        """Send the policy process the parameters `policy_sync_s` held back, if any; return whether it did. The
        learner calls this whenever it waits (paused, or ahead of the env), so a pause does not leave the actor
        playing parameters a few updates old until the next update, which may be hours away."""
        server = self._server
        if server is None or not self._unpublished:
            return False
        server.sync(self.params)
        self._unpublished = False
        return True

    def compile(self, batch_size: int, batch_length: int) -> float:
        """Compile the train and policy steps ahead of time; return the seconds it took."""
        t0 = time.monotonic()
        spec = self.image_shape
        b, t = batch_size, batch_length + self.cfg.replay_context  # replayed windows include the context
        action = jax.ShapeDtypeStruct((b, t), jnp.int32) if self.act_space.discrete else \
            jax.ShapeDtypeStruct((b, t, self.act_space.n), jnp.float32)
        batch = {"image": jax.ShapeDtypeStruct((b, t, *spec), jnp.uint8), "action": action,
                 "reward": jax.ShapeDtypeStruct((b, t), jnp.float32),
                 **{k: jax.ShapeDtypeStruct((b, t), jnp.bool_) for k in ("is_first", "is_last", "is_terminal")}}
        if self.act_space.masked:
            batch["action_mask"] = jax.ShapeDtypeStruct((b, t, packed_size(self.act_space.n)), jnp.uint8)
        if self.cfg.replay_context:
            batch.update({"deter": jax.ShapeDtypeStruct((b, t, self.cfg.deter), jnp.float16),
                          "stoch": jax.ShapeDtypeStruct((b, t, self.cfg.stoch), jnp.uint16),
                          "latent_ok": jax.ShapeDtypeStruct((b, t), jnp.bool_)})
        self._train_step = self._train_step.lower(self.state, batch, self._train_key).compile()
        if self.cfg.policy_process:
            self.start_policy_process()
        else:
            obs = {"image": np.zeros(spec, np.uint8)}
            if self.act_space.discrete:
                obs["action_mask"] = np.ones(self.act_space.n, bool)
            self.policy(obs, None)
            self.policy({"image": obs["image"]}, None)
        return time.monotonic() - t0

    # -- dreams for the overlay ---------------------------------------------------------------------------

    def _imagine_fn(self, params, state: PolicyState, horizon: int, key, first_mask):
        m = lambda *a, method: self.model.apply({"params": params}, *a, method=method)

        def step(carry, x):
            deter, stoch = carry
            k, t = x
            k_act, k_dyn = jax.random.split(k)
            feat = feature(deter, stoch)
            mask = None
            if self.act_space.masked:
                mask = predicted_mask(m(feat, method=DreamerModel.legal))
                if first_mask is not None:  # the real legal actions of the observed state, as in training
                    mask = jnp.where(t == 0, allow_all_if_none(first_mask), mask)
            action, _, _ = policy_action(self.cfg, self.act_space, m(feat, method=DreamerModel.policy), k_act, mask)
            deter, stoch = m(deter, stoch, action, k_dyn, method=DreamerModel.img_step)
            reward = m(feature(deter, stoch), method=DreamerModel.reward)
            return (deter, stoch), (deter, stoch, reward, action)

        xs = (jax.random.split(key, horizon), jnp.arange(horizon))
        _, (deter, stoch, reward, action) = jax.lax.scan(step, (state.deter, state.stoch), xs)
        return m(deter, stoch, method=DreamerModel.decode), twohot_mean(reward), action

    def imagine(self, state: PolicyState, horizon: int = 15, mask: np.ndarray | None = None,
                *, with_actions: bool = False):
        """Dream `horizon` steps ahead from an actor's latent state with the current policy.

        `mask`: the legal actions of the observation the state has seen (masked action spaces); the first
        dreamed action is drawn among them, later ones among those the mask head predicts (without it, the
        first one too). Returns (frames uint8[horizon, H, W, C], predicted rewards float32[horizon]) of the
        first env, and with `with_actions` also the dreamed actions [horizon, ...] (one-hot when discrete).
        """
        first_mask = None
        if self.act_space.masked and mask is not None:
            first_mask = jnp.asarray(np.asarray(mask, bool).reshape(1, -1))
        frames, rewards, actions = self._imagine(self.params, state, horizon, self._next_key(), first_mask)
        frames = np.asarray(frames[:, 0] * 255 + 0.5).clip(0, 255).astype(np.uint8)
        if with_actions:
            return frames, np.asarray(rewards[:, 0], np.float32), np.asarray(actions[:, 0])
        return frames, np.asarray(rewards[:, 0], np.float32)

    def _open_loop_fn(self, params, images, actions, context: int, key):
        m = lambda *a, method: self.model.apply({"params": params}, *a, method=method)
        T = images.shape[0]
        tokens = m(images[:, None], method=DreamerModel.encode)  # [T, 1, E]
        prev = jnp.concatenate([jnp.zeros_like(actions[:1]), actions[:-1]], 0)[:, None]
        first = jnp.zeros((T, 1), bool).at[0].set(True)
        keys = jax.random.split(key, T)

        def observe(carry, x):
            token, act, f, k = x
            deter, stoch, _, _ = m(*carry, act, token, f, k, method=DreamerModel.obs_step)
            return (deter, stoch), None

        init = m(1, method=DreamerModel.initial)
        carry, _ = jax.lax.scan(observe, init, (tokens[:context], prev[:context], first[:context], keys[:context]))

        def dream(carry, x):
            act, k = x
            deter, stoch = m(*carry, act, k, method=DreamerModel.img_step)
            return (deter, stoch), (deter, stoch)

        _, (deter, stoch) = jax.lax.scan(dream, carry, (prev[context:], keys[context:]))
        return m(deter, stoch, method=DreamerModel.decode)[:, 0]

    def open_loop(self, frames: np.ndarray, actions: np.ndarray, context: int = 5) -> np.ndarray:
        """Predict frames[context:] from the first `context` real frames and the actions actually taken.

        Args: frames uint8[T, H, W, C]; actions as stored in replay ([T] indices or [T, A] vectors).
        Returns uint8[T - context, H, W, C]: the world model's open-loop predictions.
        """
        if not 0 < context < len(frames):
            raise TrainerError(f"open_loop: context = {context} must be between 1 and {len(frames) - 1}")
        acts = jax.nn.one_hot(actions, self.act_space.n) if self.act_space.discrete else jnp.asarray(actions)
        pred = self._open_loop(self.params, jnp.asarray(frames), acts, context, self._next_key())
        return np.asarray(pred * 255 + 0.5).clip(0, 255).astype(np.uint8)
