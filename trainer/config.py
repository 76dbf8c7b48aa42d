"""Typed settings of DreamerV3 and its learner. Defaults are the official ones at the `size1m` model size,
except `replay_context` (0 here, official 1: measured no gain on a CPU, see benchmarks/README.md) and the 1 %
unimix of the discrete policy, which the official code configures but does not apply (a pitfall the notes list:
here it is applied, spread over the legal actions only when there is an action mask).

The model size defaults to `size1m`, the only size that trains at a useful rate on a 2-core CPU; the
size blocks in configs/ (size12m ... size400m) set the official dimensions for a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

from annotated_types import Interval

__all__ = ["DistributedConfig", "TrainerConfig", "compute_dtype"]

Positive = Annotated[int, Interval(ge=1, le=1_000_000)]


@dataclass(frozen=True, kw_only=True)
class DistributedConfig:
    """Training over several processes (hosts) with `jax.distributed`: every process runs `dreamstream train`
    with its own env, replay and run dir; gradients are averaged over all their devices every update."""

    coordinator: str = ""
    """host:port of process 0's coordination service ('' = one process, the default)."""
    num_processes: Annotated[int, Interval(ge=1, le=4096)] = 1
    """Processes taking part; trainer.batch_size is split evenly over all their devices."""
    process_id: Annotated[int, Interval(ge=-1, le=4095)] = -1
    """This process's index (0 writes checkpoints); -1 reads JAX_PROCESS_ID or JOB_COMPLETION_INDEX."""
    join_timeout_s: Annotated[int, Interval(ge=1, le=86_400)] = 300
    """Seconds each process waits for all the others to join before it gives up."""
    heartbeat_timeout_s: Annotated[int, Interval(ge=10, le=86_400)] = 100
    """Seconds without a heartbeat after which a process counts as dead and the others stop with an error
    (instead of blocking on its gradients); lower it to fail over sooner, raise it on a flaky network."""

    def __post_init__(self) -> None:
        if self.num_processes > 1 and not self.coordinator:
            raise ValueError(f"trainer.distributed.num_processes = {self.num_processes} needs "
                             "trainer.distributed.coordinator (host:port of process 0)")


@dataclass(frozen=True, kw_only=True)
class TrainerConfig:
    agent: Literal["dreamerv3", "random"] = "dreamerv3"
    """Which agent acts: DreamerV3, or a uniform random agent (a baseline; nothing is learned)."""
    seed: int = 0
    """Seed of parameter initialisation and of the agent's sampling."""
    compute_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Dtype of activations (parameters stay float32). 'auto': bfloat16 on a GPU, float32 on a CPU (where bfloat16
    is ~2x slower without bf16 units)."""

    # Model size (size blocks set these five)
    deter: Annotated[int, Interval(ge=8, le=65_536)] = 512
    """RSSM deterministic state size (a multiple of `blocks`)."""
    hidden: Positive = 64
    """RSSM hidden layer width."""
    classes: Annotated[int, Interval(ge=2, le=1024)] = 4
    """Classes of each categorical latent."""
    depth: Positive = 4
    """CNN base channels; the four stages have depth x (2, 3, 4, 4)."""
    units: Positive = 64
    """Width of the MLP heads and the decoder's stoch path."""
    stoch: Positive = 32
    """Number of categorical latents."""
    blocks: Positive = 8
    """Groups of the block-diagonal GRU."""

    # World model
    unimix: Annotated[float, Interval(ge=0, le=1)] = 0.01
    """Share of the uniform distribution mixed into latent (and discrete policy) probabilities."""
    free_nats: Annotated[float, Interval(ge=0)] = 1.0
    """Free bits: each KL term is clipped from below at this value."""
    dyn_scale: Annotated[float, Interval(ge=0)] = 1.0
    """Weight of the dynamics KL, KL(sg(posterior) || prior)."""
    rep_scale: Annotated[float, Interval(ge=0)] = 0.1
    """Weight of the representation KL, KL(posterior || sg(prior))."""

    # Actor-critic
    imag_horizon: Annotated[int, Interval(ge=1, le=1000)] = 15
    """Imagination steps from every replayed posterior state."""
    horizon: Annotated[float, Interval(gt=1)] = 333.0
    """Discount horizon: gamma = 1 - 1 / horizon."""
    lam: Annotated[float, Interval(ge=0, le=1)] = 0.95
    """Lambda of the lambda-returns."""
    actent: Annotated[float, Interval(ge=0)] = 3e-4
    """Entropy bonus of the actor."""
    retnorm_rate: Annotated[float, Interval(gt=0, le=1)] = 0.01
    """EMA rate of the 5th/95th return percentiles that scale the advantages."""
    retnorm_limit: Annotated[float, Interval(gt=0)] = 1.0
    """Lower bound of the advantage scale (returns within this range are not scaled up)."""
    slow_rate: Annotated[float, Interval(gt=0, le=1)] = 0.02
    """EMA rate of the slow critic, updated after every step."""
    slowreg: Annotated[float, Interval(ge=0)] = 1.0
    """Weight of the critic's regulariser toward the slow critic."""
    repval_scale: Annotated[float, Interval(ge=0)] = 0.3
    """Weight of the critic loss on replayed sequences (bootstrapped from imagined returns)."""

    # Optimiser: AGC -> RMS scaling -> momentum (LaProp order), one optimizer for every module
    lr: Annotated[float, Interval(gt=0, le=1)] = 4e-5
    """Learning rate after warm-up."""
    warmup: Annotated[int, Interval(ge=0)] = 1000
    """Updates of linear learning-rate warm-up from 0."""
    agc: Annotated[float, Interval(gt=0)] = 0.3
    """Adaptive gradient clipping: a tensor's update norm is at most agc x its parameter norm."""
    beta1: Annotated[float, Interval(ge=0, lt=1)] = 0.9
    """Momentum rate (applied after RMS scaling)."""
    beta2: Annotated[float, Interval(ge=0, lt=1)] = 0.999
    """Rate of the squared-gradient average."""
    eps: Annotated[float, Interval(gt=0)] = 1e-20
    """Added to the RMS denominator."""

    # Data
    batch_size: Annotated[int, Interval(ge=1, le=4096)] = 16
    """Replayed sequences per update (B)."""
    batch_length: Annotated[int, Interval(ge=2, le=4096)] = 64
    """Steps per replayed sequence (T)."""
    replay_context: Annotated[int, Interval(ge=0, le=1)] = 0
    """1: replay keeps each step's latent state (from acting, refreshed by training) and a replayed sequence
    starts from the latent of the step before it, as the official replay_context 1 (no burn-in from zeros);
    0 (the default here, unlike the official 1: no measured gain on a CPU): sequences start from zeros. Costs
    deter x 2 + stoch x 2 bytes of RAM per step."""
    imag_last: Annotated[int, Interval(ge=0)] = 0
    """Start imagination from only the last K states of each sequence (0: all B x T, the official setting)."""
    replay_capacity: Annotated[int, Interval(ge=1000)] = 1_000_000
    """Replay steps kept in RAM (a 64x64 step takes about 12 KB; 1e6 steps is about 12 GB)."""
    replay_chunk: Annotated[int, Interval(ge=16)] = 1024
    """Steps per replay file on disk; a kill -9 loses at most the unwritten part of one chunk."""
    train_after: Annotated[int, Interval(ge=0)] = 1024
    """Env steps collected before the first update."""
    data_parallel: bool = True
    """Split each batch over every local device (GPUs, or forced host devices); one device: no effect."""
    policy_process: bool = True
    """Act in a child process with its own single-threaded XLA runtime, so acting never waits for an update."""
    policy_sync_s: Annotated[float, Interval(ge=0, le=3600)] = 0.0
    """Seconds between parameter pushes to the policy process (0: after every update)."""
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    """Multi-host training (see DistributedConfig); one process by default."""

    FIXED_ON_RESUME: ClassVar[tuple[str, ...]] = ("agent", "deter", "hidden", "classes", "depth", "units", "stoch",
                                                  "blocks")

    def __post_init__(self) -> None:
        if self.imag_last > self.batch_length:
            raise ValueError(f"trainer.imag_last = {self.imag_last}: must be <= trainer.batch_length = "
                             f"{self.batch_length} (0 means all)")
        if self.deter % self.blocks:
            raise ValueError(f"trainer.deter = {self.deter}: must be a multiple of trainer.blocks = {self.blocks}")


def compute_dtype(cfg: TrainerConfig) -> str:
    """The activation dtype `cfg` asks for on the backend JAX runs on ('auto' resolved)."""
    if cfg.compute_dtype != "auto":
        return cfg.compute_dtype
    import jax

    return "float32" if jax.default_backend() == "cpu" else "bfloat16"
