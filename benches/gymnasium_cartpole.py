"""Gymnasium's CartPole-v1 steps/s with random actions, for comparison with
`benches/env_step.rs`. Prints one JSON object.

- single: one `gymnasium.make("CartPole-v1")` env (with its default
  wrappers), reset on episode end;
- vec1024: Gymnasium's NumPy-vectorized CartPole,
  `gymnasium.make_vec("CartPole-v1", num_envs=1024,
  vectorization_mode="vector_entry_point")` (autoreset inside).

Random actions are drawn in blocks up front so that both sides time the env,
not the sampling.
"""

import json
import sys
import time

import gymnasium
import numpy as np


def bench_single(seconds):
    env = gymnasium.make("CartPole-v1")
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        actions = rng.integers(0, 2, size=10_000).tolist()
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        steps += len(actions)
    return steps / (time.perf_counter() - start)


def bench_vec(seconds, n=1024):
    env = gymnasium.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")
    env.reset(seed=0)
    rng = np.random.default_rng(2)
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        actions = rng.integers(0, 2, size=(100, n))
        for a in actions:
            env.step(a)
        steps += actions.size
    return steps / (time.perf_counter() - start)


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    print(json.dumps({
        "gymnasium_version": gymnasium.__version__,
        "numpy_version": np.__version__,
        "single_steps_per_s": bench_single(seconds),
        "vec1024_steps_per_s": bench_vec(seconds),
    }))
