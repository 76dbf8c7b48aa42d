"""The PLACEHOLDER random agent respects action masks and the action space."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from trainer import RandomAgent


def test_masked_actions_are_never_chosen() -> None:
    agent = RandomAgent(gym.spaces.Discrete(6), seed=0)
    mask = np.array([False, True, False, False, True, False])
    actions = {agent.policy({"action_mask": mask}, None)[0] for _ in range(200)}
    assert actions == {1, 4}


def test_unmasked_discrete_covers_the_space_and_keeps_state() -> None:
    agent = RandomAgent(gym.spaces.Discrete(3, start=1), seed=0)
    seen = set()
    state = "s"
    for _ in range(100):
        action, state = agent.policy({}, state)
        seen.add(action)
    assert seen == {1, 2, 3} and state == "s"


def test_box_actions_stay_in_bounds() -> None:
    space = gym.spaces.Box(-1, 1, (2,), np.float32)
    agent = RandomAgent(space, seed=0)
    for _ in range(50):
        assert space.contains(agent.policy({}, None)[0])
