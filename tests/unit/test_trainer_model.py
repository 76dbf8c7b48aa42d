"""DreamerV3's networks and train step on tiny configs: parameter counts, shapes, the NaN guard, masks,
dreams, and an end-to-end check that the agent learns a trivial pixel task."""

from __future__ import annotations

import dataclasses
import functools

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from app.config import load_blocks
from trainer.agent import DreamerAgent
from trainer.config import TrainerConfig
from trainer.dreamer import init_state, make_train_step
from trainer.model import ActSpace, count_parameters
from trainer.replay import Replay, pack_mask, step_spec

TINY = TrainerConfig(**load_blocks()["tiny"]["trainer"])


@functools.cache
def train_step_for(cfg: TrainerConfig, act: ActSpace):
    """One jitted step per config for the whole module: compiling dominates these tests' time."""
    return make_train_step(cfg, act, (64, 64, 3))


@pytest.mark.parametrize(("block", "count"), [
    pytest.param("size1m", 687_875, id="size1m"),  # = the official implementation on Crafter (17 actions)
    pytest.param("size12m", 10_498_259, id="size12m"),  # = the official implementation on Crafter
    pytest.param("size25m", 23_495_475, id="size25m"),
    pytest.param("size50m", 41_658_259, id="size50m"),
    pytest.param("size100m", 93_480_531, id="size100m"),
    pytest.param("size200m", 165_965_075, id="size200m"),
    pytest.param("size400m", 372_920_979, id="size400m"),
])
def test_parameter_counts_of_the_size_blocks(block, count) -> None:
    cfg = TrainerConfig(**load_blocks()[block]["trainer"])
    assert count_parameters(cfg, ActSpace(True, 17), (64, 64, 3)) == count


def batch_of(cfg: TrainerConfig, act: ActSpace, shape=(64, 64, 3), seed=0) -> dict:
    rng = np.random.default_rng(seed)
    B, T = cfg.batch_size, cfg.batch_length
    action = rng.integers(0, act.n, (B, T)).astype(np.int32) if act.discrete else \
        rng.uniform(-1, 1, (B, T, act.n)).astype(np.float32)
    last = rng.random((B, T)) < 0.1
    return {"image": rng.integers(0, 256, (B, T, *shape), dtype=np.uint8), "action": action,
            "reward": rng.normal(size=(B, T)).astype(np.float32), "is_first": rng.random((B, T)) < 0.1,
            "is_last": last, "is_terminal": last & (rng.random((B, T)) < 0.5)}


def unchanged(new, old) -> set[str]:
    flat = jax.tree_util.tree_flatten_with_path(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), new, old))[0]
    return {jax.tree_util.keystr(path[:1]) for path, same in flat if same}


@pytest.mark.parametrize("act", [ActSpace(True, 5), ActSpace(False, 3)], ids=["discrete", "continuous"])
def test_train_step_trains_every_module_and_reports_finite_metrics(act) -> None:
    # Tiny latents have a KL below 1 nat (no prior gradient under free bits); without warm-up, zero-initialised
    # output layers move on the first update and pass gradients to their hidden layers on the second.
    cfg = dataclasses.replace(TINY, free_nats=0.0, warmup=0, lr=1e-3)
    state = init_state(cfg, act, (64, 64, 3), jax.random.PRNGKey(0))
    step = train_step_for(cfg, act)
    new = state
    for i in range(2):
        new, metrics = step(new, batch_of(cfg, act, seed=i), jax.random.PRNGKey(i))
    assert int(new.step) == 2 and float(metrics["opt/finite"]) == 1.0
    # Envs without a mask train as before masks existed: no mask head, no mask loss.
    assert not any(k.startswith(("loss/mask", "mask/")) for k in metrics) and "mask_out" not in state.params
    for key in ("loss/image", "loss/reward", "loss/cont", "loss/dyn", "loss/rep", "loss/policy", "loss/value",
                "loss/repval", "actor/entropy", "ret/p95", "opt/grad_norm"):
        assert np.isfinite(float(metrics[key])), key
    assert unchanged(new.params, state.params) == set()  # one optimiser trains every module
    assert unchanged(new.slow, state.slow) == set()  # the slow critic follows


def test_free_bits_and_zero_init_heads_hold_their_modules_at_first() -> None:
    """With the official free bits and zero-initialised reward/value outputs, exactly these stay fixed."""
    act = ActSpace(True, 5)
    state = init_state(TINY, act, (64, 64, 3), jax.random.PRNGKey(0))
    step = train_step_for(TINY, act)
    new, _ = step(state, batch_of(TINY, act), jax.random.PRNGKey(1))
    new, metrics = step(new, batch_of(TINY, act, seed=1), jax.random.PRNGKey(2))
    assert float(metrics["loss/dyn"]) == TINY.free_nats  # the tiny latents' KL is below 1 nat
    assert unchanged(new.params, state.params) == {"['prior_mlp']", "['prior_out']", "['reward_mlp']",
                                                   "['value_mlp']"}


@pytest.mark.parametrize("imag_last", [0, 3])
def test_the_replay_value_loss_is_a_mean_over_the_rows_it_trains(imag_last) -> None:
    """At init the value output is zero, so every trained row costs log(255) for the return and as much for
    the slow critic: the mean is that, also when only the last `imag_last` starts have a bootstrap (the
    other rows must not count as zeros)."""
    act = ActSpace(True, 5)
    cfg = TINY if not imag_last else TrainerConfig(**{**load_blocks()["tiny"]["trainer"], "imag_last": imag_last})
    batch = batch_of(cfg, act)
    batch["is_first"][:] = batch["is_last"][:] = batch["is_terminal"][:] = False  # no episode end: every row
    state = init_state(cfg, act, (64, 64, 3), jax.random.PRNGKey(0))
    _, metrics = train_step_for(cfg, act)(state, batch, jax.random.PRNGKey(1))
    assert float(metrics["loss/repval"]) == pytest.approx((1 + cfg.slowreg) * np.log(255), rel=1e-5)


def test_non_finite_batch_leaves_the_state_unchanged() -> None:
    act = ActSpace(True, 5)
    state = init_state(TINY, act, (64, 64, 3), jax.random.PRNGKey(0))
    step = train_step_for(TINY, act)
    state, _ = step(state, batch_of(TINY, act), jax.random.PRNGKey(1))
    bad = batch_of(TINY, act)
    bad["reward"][0, 3] = np.nan
    new, metrics = step(state, bad, jax.random.PRNGKey(2))
    assert float(metrics["opt/finite"]) == 0.0 and not np.isfinite(float(metrics["loss/total"]))
    same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), new, state)
    assert all(jax.tree.leaves(same))


def test_replay_context_starts_from_the_stored_latent_and_returns_new_ones() -> None:
    cfg = dataclasses.replace(TINY, replay_context=1)
    act = ActSpace(True, 5)
    state = init_state(cfg, act, (64, 64, 3), jax.random.PRNGKey(0))
    step = train_step_for(cfg, act)
    B, T = cfg.batch_size, cfg.batch_length
    batch = batch_of(dataclasses.replace(cfg, batch_length=T + 1), act)
    batch["is_first"][:] = False
    rng = np.random.default_rng(3)
    batch.update({"deter": rng.normal(size=(B, T + 1, cfg.deter)).astype(np.float16),
                  "stoch": rng.integers(0, cfg.classes, (B, T + 1, cfg.stoch)).astype(np.uint16),
                  "latent_ok": np.zeros((B, T + 1), bool)})
    _, fresh = step(state, batch, jax.random.PRNGKey(1))
    assert fresh["latent/deter"].shape == (B, T, cfg.deter) and fresh["latent/stoch"].shape == (B, T, cfg.stoch)
    assert int(fresh["latent/stoch"].max()) < cfg.classes
    batch["latent_ok"][:] = True  # now the first trained step continues from the stored context latent
    _, context = step(state, batch, jax.random.PRNGKey(1))
    assert float(context["loss/image"]) != float(fresh["loss/image"])
    assert not np.allclose(np.asarray(context["latent/deter"][:, 0], np.float32),
                           np.asarray(fresh["latent/deter"][:, 0], np.float32))
    # A stored latent is never used across an episode start.
    batch["is_first"][:, 1] = True
    _, reset = step(state, batch, jax.random.PRNGKey(1))
    np.testing.assert_allclose(float(reset["loss/image"]), float(fresh["loss/image"]), rtol=1e-5)


def test_masked_actions_are_learned_and_respected_in_imagination() -> None:
    """A masked action space (chess): the mask head learns the legal actions, the first imagined action of
    every start state is legal under the replayed mask, and later ones follow the predicted mask."""
    cfg = dataclasses.replace(TINY, warmup=0, lr=3e-3)
    act = ActSpace(True, 6, masked=True)
    state = init_state(cfg, act, (64, 64, 3), jax.random.PRNGKey(0))
    step = train_step_for(cfg, act)
    losses, accuracy, metrics = [], [], {}
    for i in range(40):
        batch = batch_of(cfg, act, seed=i)
        # Legal actions are told by the image: dark frames allow actions 0-1, bright ones 4-5, and grey ones
        # (an episode's last observation) none.
        kind = np.random.default_rng(i).choice(3, batch["reward"].shape, p=[0.45, 0.45, 0.1])
        batch["image"] = np.array([20, 230, 125], np.uint8)[kind][..., None, None, None] + batch["image"] % 16
        mask = np.zeros((*kind.shape, act.n), bool)
        mask[..., 0:2], mask[..., 4:6] = (kind == 0)[..., None], (kind == 1)[..., None]
        batch["action_mask"] = mask
        state, metrics = step(state, batch, jax.random.PRNGKey(i))
        losses.append(float(metrics["loss/mask"]))
        accuracy.append(float(metrics["mask/acc"]))
    assert float(metrics["opt/finite"]) == 1.0 and "mask_out" in state.params
    # The real mask bounds the first imagined action, the predicted masks the later ones.
    assert float(metrics["imag/legal_start"]) == 1.0 and float(metrics["imag/legal_later"]) == 1.0
    # The loss falls by more than 40 % and the accuracy rises from ~0.5 ("all illegal" would score 0.7).
    assert np.mean(losses[-5:]) < 0.6 * losses[0] and np.mean(accuracy[-5:]) > 0.85
    # Imagined states use the predicted masks (about 0.4-0.7 of the actions legal here), not all actions.
    assert float(metrics["imag/legal_frac"]) < 0.9
    # The replay's packed masks (8 actions a byte) train exactly as the env's bool masks.
    _, from_bools = step(state, batch, jax.random.PRNGKey(99))
    _, from_packed = step(state, {**batch, "action_mask": pack_mask(batch["action_mask"])}, jax.random.PRNGKey(99))
    assert float(from_packed["loss/mask"]) == float(from_bools["loss/mask"])
    assert float(from_packed["loss/total"]) == float(from_bools["loss/total"])


class ColourMatch(gym.Env):
    """One-step episodes: the screen shows red, green or blue; the action with the colour's index pays 1."""

    COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)

    def __init__(self, seed: int = 0) -> None:
        self.observation_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)})
        self.action_space = gym.spaces.Discrete(3)
        self.rng = np.random.default_rng(seed)
        self.colour = 0

    def reset(self, *, seed=None, options=None):
        self.colour = int(self.rng.integers(3))
        return {"image": np.broadcast_to(self.COLOURS[self.colour], (16, 16, 3)).copy()}, {}

    def step(self, action):
        return {"image": np.zeros((16, 16, 3), np.uint8)}, float(action == self.colour), True, False, {}


def tiny_agent(env: gym.Env, **overrides) -> DreamerAgent:
    cfg = dataclasses.replace(TINY, **{"deter": 64, "hidden": 32, "classes": 8, "stoch": 8, "depth": 4,
                                       "units": 32, "batch_size": 8, "batch_length": 8, "imag_horizon": 3,
                                       **overrides})
    return DreamerAgent(cfg, env.observation_space, env.action_space)


def test_a_few_legal_actions_among_many_are_recalled() -> None:
    """Chess has ~30 legal moves of 4,096: the class-balanced mask loss must not learn "all illegal"."""
    cfg = dataclasses.replace(TINY, warmup=0, lr=3e-3)
    act = ActSpace(True, 256, masked=True)
    state = init_state(cfg, act, (64, 64, 3), jax.random.PRNGKey(0))
    step = train_step_for(cfg, act)
    recall, precision = [], []
    for i in range(40):
        batch = batch_of(cfg, act, seed=i)
        # Four kinds of frame (told by brightness), each with its own two legal actions of 256.
        kind = np.random.default_rng(i).choice(4, batch["reward"].shape)
        batch["image"] = np.array([10, 80, 150, 220], np.uint8)[kind][..., None, None, None] + batch["image"] % 16
        mask = np.zeros((*kind.shape, act.n), bool)
        for k, legal in enumerate(([3, 70], [100, 101], [7, 200], [50, 250])):
            mask[..., legal] = (kind == k)[..., None]
        batch["action_mask"] = mask
        state, metrics = step(state, batch, jax.random.PRNGKey(i))
        recall.append(float(metrics["mask/recall"]))
        precision.append(float(metrics["mask/precision"]))
    # Measured: a plain sum of per-action losses ends at recall 0.0-0.1 here; balanced, every legal action is
    # found by update 25 (recall 1.0) while the precision climbs (0.010 at update 5, 0.07 at update 40, 0.20 at
    # 60): the head first calls too many actions legal, then narrows down.
    assert np.mean(recall[-5:]) > 0.9, recall[-5:]
    assert np.mean(precision[-5:]) > 3 * np.mean(precision[:5]), precision


def test_policy_respects_the_action_mask_and_dreams_have_the_right_shapes() -> None:
    env = ColourMatch()
    agent = tiny_agent(env)
    obs, _ = env.reset()
    obs["action_mask"] = np.array([False, False, True])
    state = None
    for first in (True, False, False):
        action, state = agent.policy(obs, state, first)
        assert action == 2
    frames, rewards = agent.imagine(state, horizon=6)
    assert frames.shape == (6, 16, 16, 3) and frames.dtype == np.uint8 and rewards.shape == (6,)
    seq = np.stack([env.reset()[0]["image"] for _ in range(9)])
    pred = agent.open_loop(seq, np.zeros(9, np.int32), context=5)
    assert pred.shape == (4, 16, 16, 3) and pred.dtype == np.uint8


class MaskedColourMatch(ColourMatch):
    """ColourMatch where only the colour's action and the next one are legal (an `action_mask`, as in chess)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.observation_space = gym.spaces.Dict({**self.observation_space.spaces,
                                                  "action_mask": gym.spaces.MultiBinary(3)})

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed)
        return {**obs, "action_mask": np.isin(np.arange(3), [self.colour, (self.colour + 1) % 3])}, info

    def step(self, action):
        obs, *rest = super().step(action)
        return {**obs, "action_mask": np.zeros(3, bool)}, *rest


def test_an_agent_on_a_masked_env_compiles_trains_and_dreams_with_masks() -> None:
    env = MaskedColourMatch()
    agent = tiny_agent(env, policy_process=False)
    assert agent.act_space.masked
    agent.compile(8, 8)  # the compiled batch layout includes the masks
    replay = Replay(step_spec((16, 16, 3), mask=3), capacity=2000, length=8, chunk_steps=64, seed=0)
    for _ in range(40):
        obs, _ = env.reset()
        action, state = agent.policy(obs, None, True)
        assert obs["action_mask"][action]
        replay.add({"image": obs["image"], "action": np.int32(action), "reward": np.float32(0.0), "is_first": True,
                    "is_last": False, "is_terminal": False, "action_mask": obs["action_mask"]})
        obs, reward, *_ = env.step(action)
        replay.add({"image": obs["image"], "action": np.int32(0), "reward": np.float32(reward), "is_first": False,
                    "is_last": True, "is_terminal": True, "action_mask": obs["action_mask"]})
    for _ in range(2):
        metrics = jax.device_get(agent.train(replay.sample(8)))
    assert metrics["opt/finite"] == 1.0 and np.isfinite(metrics["loss/mask"])
    assert metrics["imag/legal_start"] == 1.0 and metrics["imag/legal_later"] == 1.0
    frames, rewards = agent.imagine(state, horizon=4)  # the overlay's dream follows the predicted masks
    assert frames.shape == (4, 16, 16, 3) and np.isfinite(rewards).all()
    # Given the observed state's real mask, the dream's first action is always among its legal ones (here one
    # legal action; the untrained mask head would allow others).
    obs, _ = env.reset()
    _, state = agent.policy(obs, None, True)
    only = np.arange(3) == int(np.flatnonzero(obs["action_mask"])[0])
    firsts = {int(agent.imagine(state, 4, only, with_actions=True)[2][0].argmax()) for _ in range(12)}
    assert firsts == {int(only.argmax())}


def test_tiny_agent_learns_a_trivial_pixel_task() -> None:
    """Chance is 1/3; DreamerV3 must find the colour-to-action rule through its world model.

    The learning rate is raised from the official 4e-5 to 1e-3 so the tiny model learns within the test's
    budget (about a thousand one-step episodes, one update per episode).
    """
    env = ColourMatch(seed=0)
    agent = tiny_agent(env, lr=1e-3, warmup=50)
    replay = Replay(step_spec((16, 16, 3)), capacity=5000, length=8, chunk_steps=64, seed=0)
    rewards: list[float] = []
    for _ in range(2500):
        obs, _ = env.reset()
        action, _ = agent.policy(obs, None, True)
        replay.add({"image": obs["image"], "action": np.int32(action), "reward": np.float32(0.0),
                    "is_first": True, "is_last": False, "is_terminal": False})
        obs, reward, *_ = env.step(action)
        replay.add({"image": obs["image"], "action": np.int32(0), "reward": np.float32(reward),
                    "is_first": False, "is_last": True, "is_terminal": True})
        rewards.append(reward)
        if replay.inserted >= 64:
            agent.train(replay.sample(8))
        if len(rewards) >= 200 and np.mean(rewards[-200:]) >= 0.8:
            break
    assert np.mean(rewards[-200:]) >= 0.8, f"mean reward of the last 200 episodes: {np.mean(rewards[-200:]):.2f}"


def test_compute_dtype_auto_is_bfloat16_on_a_gpu_and_float32_on_a_cpu(monkeypatch) -> None:
    from trainer.config import compute_dtype

    auto = dataclasses.replace(TINY, compute_dtype="auto")
    assert TrainerConfig().compute_dtype == "auto"
    assert compute_dtype(auto) == "float32"  # this machine: a CPU
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert compute_dtype(auto) == "bfloat16"
    assert compute_dtype(dataclasses.replace(TINY, compute_dtype="float32")) == "float32"  # asked for: kept


def test_device_memory_is_reported_where_jax_measures_it(monkeypatch) -> None:
    from trainer.agent import DreamerAgent

    assert DreamerAgent.device_memory() is None  # a CPU: JAX reports nothing

    class Gpu:
        def memory_stats(self):
            return {"bytes_in_use": 7_250_000_000, "peak_bytes_in_use": 9_100_000_000, "bytes_limit": 24e9}

    monkeypatch.setattr(jax, "local_devices", lambda: [Gpu()])
    assert DreamerAgent.device_memory() == {"in_use_gb": 7.25, "peak_gb": 9.1, "limit_gb": 24.0}


def test_the_host_template_describes_the_state_on_the_cpu_without_copying_it() -> None:
    agent = tiny_agent(ColourMatch())
    template = agent.host_template()
    leaves, state_leaves = jax.tree.leaves(template), jax.tree.leaves(agent.state)
    assert len(leaves) == len(state_leaves) and all(isinstance(t, jax.ShapeDtypeStruct) for t in leaves)
    assert all((t.shape, t.dtype) == (x.shape, x.dtype) for t, x in zip(leaves, state_leaves, strict=True))
    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    assert all(t.sharding == cpu for t in leaves)  # not the live state's placement (a GPU, a mesh)
