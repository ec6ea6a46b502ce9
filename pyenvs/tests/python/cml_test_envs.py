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


def frame(t, seed):
    """A channels-first uint8 frame [2, 3, 4]: value 100c + 10h + w + t, and
    the last pixel of channel 1 holds the episode's seed mod 100."""
    c, h, w = np.meshgrid(np.arange(2), np.arange(3), np.arange(4), indexing="ij")
    out = (100 * c + 10 * h + w + t).astype(np.uint8)
    out[1, 2, 3] = seed % 100
    return out


class Frames(gym.Env):
    """uint8 CHW frames; every episode is truncated after 3 steps; the
    reward is the action."""

    observation_space = spaces.Box(0, 255, (2, 3, 4), dtype=np.uint8)
    action_space = spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.seed = 0, 0 if seed is None else seed
        return frame(0, self.seed), {}

    def step(self, action):
        self.t += 1
        return frame(self.t, self.seed), float(action), False, self.t >= 3, {}


class BatchedOf(gym.vector.VectorEnv):
    """A batched vector env of `single` (a class with both spaces), as
    `make_vec(..., vectorization_mode="vector_entry_point")` makes it;
    `t` counts each env's steps."""

    def __init__(self, single, num_envs, autoreset_mode):
        self.num_envs = num_envs
        self.single_observation_space = single.observation_space
        self.single_action_space = single.action_space
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode(autoreset_mode)}
        self.t = np.zeros(num_envs, dtype=np.int64)


class FramesVector(BatchedOf):
    """Frames as a batched vector env (as ale_py's AtariVectorEnv is one):
    same-step autoreset with `final_obs`; seeds must be C ints."""

    def __init__(self, num_envs, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP):
        super().__init__(Frames, num_envs, autoreset_mode)
        self.seeds = np.zeros(num_envs, dtype=np.int64)

    def frames(self):
        return np.stack([frame(t, s) for t, s in zip(self.t, self.seeds)])

    def reset(self, seed=None, options=None):
        if seed is not None:
            seed = np.asarray(seed)
            assert seed.shape == (self.num_envs,) and (seed >= 0).all() and (seed < 2**31).all(), seed
            self.seeds = seed.astype(np.int64)
        self.t[:] = 0
        return self.frames(), {}

    def step(self, actions):
        assert actions.shape == (self.num_envs,), actions.shape
        self.t += 1
        truncated = self.t >= 3
        info = {}
        if truncated.any():
            info["final_obs"] = self.frames()
            self.t[truncated] = 0
        return self.frames(), actions.astype(np.float64), np.zeros(self.num_envs, bool), truncated, info


class ThreeLives(gym.Env):
    """A game of 3 lives, one lost every 2 steps: `info["lives"]` is 2 after
    step 2, 1 after step 4, and step 6 ends the game (terminated, lives 0).
    The observation counts the game's steps; the reward is 1 a step."""

    observation_space = spaces.Box(0.0, 10.0, (1,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, dtype=np.float32), {"lives": 3}

    def step(self, action):
        self.t += 1
        lives = 3 - self.t // 2
        return np.full(1, self.t, dtype=np.float32), 1.0, lives == 0, False, {"lives": lives}


class ThreeLivesVector(BatchedOf):
    """ThreeLives batched, same-step autoreset with `final_obs`."""

    def __init__(self, num_envs, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP):
        super().__init__(ThreeLives, num_envs, autoreset_mode)

    def obs(self):
        return self.t.astype(np.float32).reshape(-1, 1)

    def reset(self, seed=None, options=None):
        self.t[:] = 0
        return self.obs(), {"lives": np.full(self.num_envs, 3)}

    def step(self, actions):
        self.t += 1
        lives = 3 - self.t // 2
        terminated = lives == 0
        info = {}
        if terminated.any():
            info["final_obs"] = self.obs()
            self.t[terminated] = 0
            lives[terminated] = 3
        info["lives"] = lives
        return self.obs(), np.ones(self.num_envs), terminated, np.zeros(self.num_envs, bool), info


gym.register("CmlTest/Dict-v0", entry_point=DictObservations)
gym.register("CmlTest/ThreeLives-v0", entry_point=ThreeLives, vector_entry_point=ThreeLivesVector)
gym.register("CmlTest/Frames-v0", entry_point=Frames, vector_entry_point=FramesVector)
gym.register("CmlTest/Misbehaving-v0", entry_point=Misbehaving)
