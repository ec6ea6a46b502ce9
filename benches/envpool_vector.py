"""EnvPool's C++ Atari vector env stepping random actions (no learning, no
inference): the C++ limit for benches/python_envs.sh. EnvPool is not a
dependency of cml-rl; give a Python that has it (`pip install envpool`).

    python benches/envpool_vector.py <task, e.g. Pong-v5> <num_envs> <num_threads> <seconds>
"""

import sys
import time

import envpool
import numpy as np


def main():
    task, num_envs, threads, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    env = envpool.make(task, env_type="gymnasium", num_envs=num_envs, num_threads=threads, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    n = env.action_space.n

    def run(duration):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < duration:
            env.step(rng.integers(0, n, size=num_envs))
            steps += num_envs
        return steps / (time.perf_counter() - start)

    run(min(2.0, seconds))  # warm-up
    rate = run(seconds)
    label = f"envpool {envpool.__version__} {task} ({num_envs} envs, {threads} threads)"
    print(f"{label:<62} {rate:10.0f} steps/s")


if __name__ == "__main__":
    main()
