"""The policy's child process: it acts with the masks it is given, and a dead or hung child is replaced."""

from __future__ import annotations

import os
import signal
import threading
import time

import jax
import numpy as np
import pytest

from tests.unit.test_trainer_model import ColourMatch, tiny_agent
from trainer.errors import TrainerError


@pytest.fixture(scope="module")
def agent():
    env = ColourMatch()
    agent = tiny_agent(env, policy_process=True)
    agent.start_policy_process()
    yield agent
    agent.close()


def act(agent, first: bool = False):
    obs = {"image": np.zeros((16, 16, 3), np.uint8), "action_mask": np.array([False, True, False])}
    return agent.policy(obs, None, first)[0]


def test_the_child_acts_with_the_mask(agent) -> None:
    assert {act(agent, first=i == 0) for i in range(5)} == {1}


def test_a_killed_child_is_restarted_and_acting_goes_on(agent) -> None:
    server = agent._server
    pid = server.pid
    os.kill(pid, signal.SIGKILL)
    assert act(agent, first=True) == 1
    assert server.restarts == 1 and server.pid != pid


def test_a_hung_child_is_replaced_so_no_late_answer_is_misread(agent) -> None:
    server = agent._server
    os.kill(server.pid, signal.SIGSTOP)
    image = np.zeros((16, 16, 3), np.uint8)
    action, _, _ = server._request("act", (0, image, np.array([False, False, True]), True), timeout_s=2.0)
    assert int(np.argmax(action)) == 2 and server.restarts == 2
    # The next answer belongs to the next request, not to the one that timed out.
    action, _, _ = server._request("act", (0, image, np.array([True, False, False]), False))
    assert int(np.argmax(action)) == 0


def test_garbled_parameters_end_the_child_which_is_restarted(agent) -> None:
    server = agent._server
    restarts, pid = server.restarts, server.pid
    server._params_conn.send_bytes(b"not a pickle")  # what two writers interleaving on the pipe produce
    server._proc.join(timeout=60)
    assert server._proc.exitcode == 3  # not a receiver thread dying silently while acting goes on, stale
    assert act(agent, first=True) == 1
    assert server.restarts == restarts + 1 and server.pid != pid


def test_pushes_during_a_restart_never_garble_the_pipe(agent) -> None:
    server = agent._server
    restarts, params = server.restarts, server._params
    restart = threading.Thread(target=server._restart, args=("is restarted by the test",))
    restart.start()
    pushes = 0
    while restart.is_alive():  # the learner pushes after every update, also while the child starts
        server.sync(params)
        pushes += 1
        time.sleep(0.01)
    restart.join()
    for _ in range(3):
        server.sync(params)
    assert pushes > 0 and act(agent, first=True) == 1
    assert server._proc.is_alive() and server.restarts == restarts + 1


def test_a_child_that_keeps_failing_is_a_clear_error(agent, monkeypatch) -> None:
    server = agent._server
    monkeypatch.setattr(server, "_restart", lambda why: None)  # a restart that does not bring it back
    os.kill(server.pid, signal.SIGKILL)
    server._proc.join()
    with pytest.raises(TrainerError, match="died .* also after a restart"):
        act(agent)


def test_parameters_policy_sync_s_held_back_are_sent_once_the_learner_waits(agent, monkeypatch) -> None:
    """With policy_sync_s > 0 the last updates before a pause (or a wait for env steps) used to reach the actor
    only after the next update, which may be hours away; the learner sends them as soon as it waits."""
    import dataclasses

    import jax

    from tests.unit.test_replay import SPEC, fill
    from tests.unit.test_trainer_model import batch_of
    from trainer.learner import Learner
    from trainer.replay import Replay

    def sent_now() -> bool:
        host = jax.device_get(agent.state.params)
        return all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(agent._server._params),
                                                        jax.tree.leaves(host), strict=True))

    monkeypatch.setattr(agent, "cfg", dataclasses.replace(agent.cfg, policy_sync_s=3600.0))
    monkeypatch.setattr(agent._server, "last_sync", time.monotonic())  # just sent: the next update is held back
    for seed in (0, 1):  # the first update leaves the parameters as they are (the warm-up's lr starts at 0)
        agent.train(batch_of(agent.cfg, agent.act_space, shape=(16, 16, 3), seed=seed))
    assert not sent_now()
    assert agent.publish_pending() and sent_now()
    assert not agent.publish_pending()  # nothing held back any more

    agent.train(batch_of(agent.cfg, agent.act_space, shape=(16, 16, 3), seed=2))
    assert not sent_now()
    replay = Replay(SPEC, capacity=400, length=8, chunk_steps=16)
    fill(replay, 100)
    learner = Learner(agent, replay, train_ratio=1.0, env_steps=lambda: 100)
    learner.paused.set()
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    learner.run(stop, lambda updates, metrics: None)
    assert learner.updates == 0 and sent_now()
    assert act(agent) == 1  # the child acts on with them


def test_the_child_acts_in_float32_on_the_cpu_whatever_the_training_dtype() -> None:
    # The `gpu` block trains in bfloat16; the child runs on one CPU thread, where bfloat16 was 2-7x slower.
    agent = tiny_agent(ColourMatch(), policy_process=True, compute_dtype="bfloat16")
    try:
        agent.start_policy_process()
        assert agent._server.child_info == {"backend": "cpu", "compute_dtype": "float32"}
        assert act(agent, first=True) == 1
    finally:
        agent.close()


def test_parameters_cross_the_pipe_leaf_by_leaf_unchanged() -> None:
    import multiprocessing as mp

    from trainer.policy_server import _receive_params, _send_params

    tree = {"a": {"kernel": np.arange(12, dtype=np.float32).reshape(3, 4), "scale": np.float32(2.5)},
            "b": np.array(7, np.int32), "empty": np.zeros((0, 3), np.float32), "flags": np.array([True, False]),
            "strided": np.arange(20, dtype=np.float32).reshape(4, 5)[:, ::2]}
    reader, writer = mp.Pipe(duplex=False)
    sender = threading.Thread(target=_send_params, args=(writer, tree))  # a pipe buffer is smaller than some trees
    sender.start()
    got = _receive_params(reader)
    sender.join()
    assert got.keys() == tree.keys() and got["a"].keys() == tree["a"].keys()
    for path in (("a", "kernel"), ("a", "scale"), ("b",), ("empty",), ("flags",), ("strided",)):
        want, have = tree, got
        for k in path:
            want, have = want[k], have[k]
        want = np.asarray(want)
        assert (have.shape, have.dtype) == (want.shape, want.dtype) and np.array_equal(np.asarray(have), want), path


def test_a_push_that_fails_restarts_the_child_instead_of_stopping_pushes(agent, monkeypatch) -> None:
    # The sender thread died on anything but OSError (after perhaps half a message): no push reached the child
    # again, and it acted on stale parameters with no error shown.
    import trainer.policy_server as ps
    from tests.conftest import wait_for

    server, real, calls = agent._server, ps._send_params, []

    def flaky(conn, params):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("a device error while copying the parameters")
        return real(conn, params)

    monkeypatch.setattr(ps, "_send_params", flaky)
    restarts = server.restarts
    server.sync(agent.params)
    wait_for(lambda: not server._proc.is_alive(), "the child to be ended")
    assert act(agent, first=True) == 1 and server.restarts == restarts + 1  # restarted with the newest
    server.sync(agent.params)
    wait_for(lambda: len(calls) == 3, "the next push")  # the sender lives on
    wait_for(lambda: not any(isinstance(x, jax.Array) for x in jax.tree.leaves(server._params)),
             "the pushed parameters to be kept as a host copy")
    assert server._sender.is_alive()
