"""EnvPool's C++ Atari vector env stepping random actions (no learning, no
inference): the C++ limit for benches/python_envs.sh. EnvPool is not a
dependency of cml-rl; give a Python that has it (`pip install envpool`).

    python benches/envpool_vector.py <task, e.g. Pong-v5> <num_envs> <num_threads> <seconds>
"""

import sys

import envpool

from gymnasium_vector import random_steps_per_second


def main():
    task, num_envs, threads, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    env = envpool.make(task, env_type="gymnasium", num_envs=num_envs, num_threads=threads, seed=0)
    env.reset()
    rate = random_steps_per_second(env, num_envs, env.action_space.n, seconds)
    label = f"envpool {envpool.__version__} {task} ({num_envs} envs, {threads} threads)"
    print(f"{label:<72} {rate:10.0f} steps/s")


if __name__ == "__main__":
    main()
