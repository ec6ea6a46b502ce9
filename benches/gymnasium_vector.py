"""The bare env: Gymnasium's own vector envs stepping random actions, no
learning, no inference. For benches/python_envs.sh, beside cml-rl's actor
host on the same envs.

    python benches/gymnasium_vector.py <id> <mode> <num_envs> <seconds>

mode: "async" (AsyncVectorEnv, one process per env, shared memory), "sync"
(SyncVectorEnv, all in this process) or "vector_entry_point" (the id's own
batched vector env, e.g. ale_py's AtariVectorEnv; `num_threads` = 2).
Prints one line: what ran, and its env steps/s.
"""

import sys
import time

import numpy as np


def random_steps_per_second(envs, num_envs, n_actions, seconds):
    """Steps `envs` (any vector env with `step(actions)`) with uniform
    random actions for `seconds` after a warm-up; env steps per second."""
    rng = np.random.default_rng(0)

    def run(duration):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < duration:
            envs.step(rng.integers(0, n_actions, size=num_envs))
            steps += num_envs
        return steps / (time.perf_counter() - start)

    run(min(2.0, seconds))  # warm-up
    return run(seconds)


def main():
    import gymnasium as gym

    env_id, mode, num_envs, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    if env_id.startswith("ALE/"):
        import ale_py

        gym.register_envs(ale_py)
    if mode == "vector_entry_point":
        kwargs = {"num_threads": 2} if env_id.startswith("ALE/") else {}
        envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)
    else:
        wrappers = []
        if env_id.startswith("ALE/"):
            # The preprocessing ale_py's vector env does in C++, in Python.
            wrappers = [
                lambda e: gym.wrappers.AtariPreprocessing(e, frame_skip=1),
                lambda e: gym.wrappers.FrameStackObservation(e, 4),
            ]
        kwargs = {"frameskip": 4} if env_id.startswith("ALE/") else {}
        envs = gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode=mode,
            vector_kwargs={"shared_memory": True} if mode == "async" else {},
            wrappers=wrappers,
            **kwargs,
        )
    envs.reset(seed=0)
    rate = random_steps_per_second(envs, num_envs, envs.single_action_space.n, seconds)
    envs.close()
    print(f"{f'gymnasium {env_id} ({mode}, {num_envs} envs)':<72} {rate:10.0f} steps/s")


if __name__ == "__main__":
    main()
