"""Envs that misbehave on purpose, for pyenvs/tests/gymnasium_workers.rs."""

import os
import signal
import time

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class DictObservations(gym.Env):
    observation_space = spaces.Dict({"a": spaces.Box(0, 1, (2,))})
    action_space = spaces.Discrete(2)


class Misbehaving(gym.Env):
    """Steps normally until step `at`, then does `what`."""

    observation_space = spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
    action_space = spaces.Discrete(2, start=1)

    def __init__(self, what="raise", at=3):
        self.what, self.at, self.t = what, at, 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, dtype=np.float32), {}

    def step(self, action):
        assert action in (1, 2), f"actions start at 1, got {action}"
        self.t += 1
        if self.t >= self.at:
            if self.what == "raise":
                raise RuntimeError("the env broke on purpose")
            if self.what == "hang":
                time.sleep(3600)
            if self.what == "segfault":
                os.kill(os.getpid(), signal.SIGSEGV)
        return np.full(3, self.t / 10, dtype=np.float32), float(action), False, False, {}


gym.register("CmlTest/Dict-v0", entry_point=DictObservations)
gym.register("CmlTest/Misbehaving-v0", entry_point=Misbehaving)
