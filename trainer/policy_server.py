"""The policy in its own process, so acting never waits for an update.

In one process, XLA runs the policy's small ops on the same CPU thread pool as the train step's
thousands of ops, and a policy step waits behind them (0.1-0.8 s measured on 2 cores). A child process
with a single-threaded XLA runtime is scheduled by the OS beside the learner instead, on the CPU even
when training runs on a GPU. The child keeps each actor stream's latent state; the parent sends
observations and receives actions (plus the latent, for the overlay's dreams), and pushes new
parameters after updates. If the parent dies, the child reads EOF and exits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import multiprocessing as mp
import os
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from trainer.config import TrainerConfig
from trainer.errors import TrainerError
from trainer.model import ActSpace

__all__ = ["PolicyServer"]

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0


def _send_params(conn: Connection, params: Any) -> Any:
    """Send a parameter tree as its structure and then one raw message per array. In one pickle, the child's
    unpickling (and the parent's pickling) held the GIL for the whole tree: at size50m (167 MB) the act loop
    waited up to ~300 ms per push. Leaf by leaf, it waits for one array's copy at most."""
    import jax

    leaves, treedef = jax.tree.flatten(jax.device_get(params))
    leaves = [np.asarray(leaf) for leaf in leaves]
    unsendable = [leaf.dtype for leaf in leaves if leaf.dtype.kind not in "biuf"]
    if unsendable:  # checked before the header: a half-sent tree would leave the child waiting in the pipe
        raise TypeError(f"parameters of dtype {unsendable[0]} cannot be sent to the policy process")
    conn.send(("params", treedef, [(leaf.shape, leaf.dtype.str) for leaf in leaves]))
    for leaf in leaves:
        flat = np.ascontiguousarray(leaf).reshape(-1)  # 1-d also for a 0-d leaf (its shape went above)
        conn.send_bytes(memoryview(flat).cast("B") if flat.size else b"")
    return jax.tree.unflatten(treedef, leaves)


def _receive_params(conn: Connection) -> Any:
    """Read what `_send_params` sent; the new tree only exists once every array has arrived."""
    import jax
    import jax.numpy as jnp

    kind, treedef, specs = conn.recv()
    if kind != "params":
        raise ValueError(f"expected parameters, got {kind!r}")
    leaves = [jnp.asarray(np.frombuffer(conn.recv_bytes(), np.dtype(dtype)).reshape(shape))
              for shape, dtype in specs]
    return jax.tree.unflatten(treedef, leaves)


def _serve(conn: Connection, params_conn: Connection, cfg: TrainerConfig, act_space: ActSpace,
           image_shape: tuple[int, int, int], seed: int) -> None:
    """Child process: a single-threaded CPU JAX runtime answering act/close messages on `conn`, while a
    thread takes new parameters from `params_conn` (so a parameter push never delays an act)."""
    # Read when the backend starts (on first use), which is after this point: jax itself is already imported
    # by unpickling this function's module, so JAX_PLATFORMS in the environment would come too late.
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_platforms", "cpu")

    from trainer.dreamer import act_step
    from trainer.model import DreamerModel

    # Acting is always float32 here: this process runs on one CPU thread, where bfloat16 (the `gpu` block's
    # training dtype) made a size50m act step 55-85 ms instead of 8 ms. Parameters are float32 either way.
    cfg = dataclasses.replace(cfg, compute_dtype="float32")
    model = DreamerModel(cfg, act_space, image_shape)
    step = jax.jit(functools.partial(act_step, model))

    key = jax.random.PRNGKey(seed)
    latest: dict[str, Any] = {"params": _receive_params(params_conn)}

    def receive_params() -> None:
        while True:
            try:
                latest["params"] = _receive_params(params_conn)
            except (EOFError, OSError):
                return
            except Exception as exc:  # a garbled message: acting on with stale parameters would go unnoticed
                print(f"dreamstream policy process: unreadable parameters ({type(exc).__name__}: {exc}); exiting "
                      "so that it is restarted with the current ones", file=sys.stderr, flush=True)
                os._exit(3)

    receiver = threading.Thread(target=receive_params, name="policy-params", daemon=True)
    receiver.start()
    conn.send(("ok", {"backend": jax.default_backend(), "compute_dtype": cfg.compute_dtype}))
    streams: dict[int, tuple] = {}
    blank = (jnp.zeros((1, cfg.deter)), jnp.zeros((1, cfg.stoch, cfg.classes)), jnp.zeros((1, act_space.n)))
    mask_all = jnp.ones((1, act_space.n), bool)
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if kind == "close":
            # The parent closed the parameter pipe first, so the receiver ends (EOFError); a daemon thread still
            # inside JAX at interpreter exit is unwound by force ("terminate called ..." on stderr).
            receiver.join(timeout=5)
            return
        stream, image, mask, is_first = payload
        params = latest["params"]
        key, k = jax.random.split(key)
        deter, stoch, prev = streams.get(stream, blank)
        m = mask_all if mask is None else jnp.asarray(mask[None], bool)
        deter, stoch, action = step(params, deter, stoch, prev, jnp.asarray(image[None]),
                                    jnp.asarray([is_first]), m, k)
        streams[stream] = (deter, stoch, action)
        conn.send(("act", (np.asarray(action[0]), np.asarray(deter), np.asarray(stoch))))


class PolicyServer:
    """A child process that acts with the newest parameters it was sent; restarted if it dies or hangs.

    A restart costs the child's compile (seconds) and the streams' latent states (they start afresh, as
    at an episode start); the run goes on.
    """

    def __init__(self, cfg: TrainerConfig, act_space: ActSpace, image_shape: tuple[int, int, int],
                 params: Any, seed: int = 0) -> None:
        self._args = (cfg, act_space, tuple(image_shape))
        self._seed = seed
        self._lock = threading.Lock()
        self._params_lock = threading.Lock()
        self.act_space = act_space
        self.last_sync = 0.0
        self.restarts = 0
        self.child_info: dict[str, Any] = {}
        """What the child reported at its start: its JAX backend and compute dtype."""
        self._params = params
        # Pushes go through one sender thread holding only the newest parameters: the learner hands them over
        # and goes on (no pickling, no wait for a child that is busy or restarting), and the pipe has one
        # writer at a time (the sender or a start, under _params_lock).
        self._pending: Any = None
        self._closed = False
        self._pushed = threading.Condition()
        self._start()
        self._sender = threading.Thread(target=self._send_pushes, name="policy-params-push", daemon=True)
        self._sender.start()

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        _, act_space, image_shape = self._args
        mask = np.ones(act_space.n, bool) if act_space.discrete else None
        warmup = (-1, np.zeros(image_shape, np.uint8), mask, True)  # compiles the policy step before real use
        ready = False
        # The parameter pipe is written by one thread at a time: a push (`sync`, from the learner) that came in
        # the middle of this first send would interleave its bytes with it (the child then reads garbage).
        with self._params_lock:
            self._conn, child = ctx.Pipe()
            child_params, self._params_conn = ctx.Pipe(duplex=False)  # the child reads, this side writes
            self._proc = ctx.Process(target=_serve, args=(child, child_params, *self._args,
                                                          self._seed + self.restarts),
                                     name="dreamstream-policy", daemon=True)
            self._proc.start()
            child.close()
            child_params.close()
            with self._pushed:
                params, self._pending = self._params, None  # the newest: a push waiting now is this one
            try:
                _send_params(self._params_conn, params)
                sent = True
            except OSError:
                sent = False
        try:
            if sent and self._conn.poll(START_TIMEOUT_S):
                self.child_info = self._conn.recv()[1]
                self._conn.send(("act", warmup))
                ready = self._conn.poll(START_TIMEOUT_S)
                if ready:
                    self._conn.recv()
        except (EOFError, OSError):
            ready = False
        if not ready:
            alive = self._proc.is_alive()
            self._stop_process()
            raise TrainerError(f"the policy process did not start within {START_TIMEOUT_S:.0f}s" if alive else
                               f"the policy process exited while starting (exit code {self._proc.exitcode}; its "
                               "error is on stderr)")

    def _stop_process(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join(timeout=10)
        self._conn.close()
        with self._params_lock:  # after the kill: a push blocked on the dead child's full pipe has failed by now
            self._params_conn.close()

    def _restart(self, why: str) -> None:
        log.warning("the policy process %s; restarting it (acting resumes once it has compiled)", why)
        self._stop_process()
        self.restarts += 1
        self._start()

    def _request(self, kind: str, payload: Any, timeout_s: float = 60.0) -> Any:
        with self._lock:
            for attempt in (1, 2):
                if not self._proc.is_alive():
                    why = f"died (exit code {self._proc.exitcode})"
                else:
                    try:
                        self._conn.send((kind, payload))
                        if self._conn.poll(timeout_s):
                            return self._conn.recv()[1]
                        # A late answer would be read as the reply to the next request: never reuse this pipe.
                        why = f"did not answer a {kind!r} request in {timeout_s:.0f}s"
                    except (EOFError, OSError):
                        why = f"died (exit code {self._proc.exitcode})"
                if attempt == 2:
                    raise TrainerError(f"the policy process {why}, also after a restart")
                self._restart(why)
        raise AssertionError("unreachable")

    def act(self, image: np.ndarray, mask: np.ndarray | None, is_first: bool, stream: int = 0):
        """Return (action vector [one-hot or continuous], deter, stoch) for one observation of `stream`."""
        return self._request("act", (stream, image, mask, is_first))

    def sync(self, params: Any) -> None:
        """Hand new parameters (device or host arrays; the sender thread copies them to the host) to the sender
        thread and return at once; acting picks them up without waiting. Pushes that come faster than they can
        be sent are coalesced to the newest."""
        with self._pushed:
            self._params = params  # what a restarted child starts from
            self._pending = params
            self._pushed.notify()
        self.last_sync = time.monotonic()

    def _send_pushes(self) -> None:
        while True:
            with self._pushed:
                while self._pending is None and not self._closed:
                    self._pushed.wait()
                if self._closed:
                    return
                params, self._pending = self._pending, None
            with self._params_lock:
                with self._pushed:
                    stale = params is not self._params  # a restart sent newer ones meanwhile (or one is pending)
                if stale:
                    continue
                try:
                    host = _send_params(self._params_conn, params)
                except OSError:
                    log.debug("parameter push skipped: the policy process is down (it restarts with the newest)")
                    continue
                except Exception:
                    # Half a message may be in the pipe (the child would wait in it for good, acting on stale
                    # parameters): end the child; the next act restarts it with the newest parameters.
                    log.exception("could not send parameters to the policy process; restarting it")
                    self._proc.kill()
                    continue
            with self._pushed:
                if self._params is params:
                    self._params = host  # a host copy: device arrays kept here would hold GPU memory

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def close(self) -> None:
        with self._pushed:
            self._closed = True
            self._pushed.notify()
        self._sender.join(timeout=30)
        with self._lock:
            with self._params_lock:
                self._params_conn.close()  # ends the child's parameter thread before the child exits
            with contextlib.suppress(OSError):
                self._conn.send(("close", None))
            self._proc.join(timeout=10)
            self._stop_process()
