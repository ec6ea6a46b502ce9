"""Sample Factory's sampler alone (no learner): env frames per second its
rollout workers and policy workers collect, through its SyncSamplingAPI,
with the default network for the env (APPO's actor-critic). A peer figure
for benches/python_envs.sh.

    SF_PYTHON=... $SF_PYTHON benches/sample_factory_sampler.py ENV SECONDS [sf args...]

ENV: `LunarLander-v2` (any Gymnasium id; Sample Factory 2.1.1 runs on
Gymnasium 0.29, which names it v2) or `atari_pong` (its Atari setup: 84x84
grayscale, frame skip 4, stack 4). Prints one line: what, frames/s.
Needs `pip install sample-factory==2.1.1 "gymnasium[box2d]==0.29.1"
ale-py==0.9.1 "numpy<2" "opencv-python-headless<4.11"`.
"""

import sys
import time

import gymnasium as gym
from sample_factory.algo.sampling.simplified_sampling_api import SyncSamplingAPI
from sample_factory.algo.utils.env_info import obtain_env_info_in_a_separate_process
from sample_factory.algo.utils.rl_utils import samples_per_trajectory
from sample_factory.cfg.arguments import parse_full_cfg, parse_sf_args
from sample_factory.envs.env_utils import register_env


def gym_env(full_env_name, cfg=None, env_config=None, render_mode=None):
    return gym.make(full_env_name, render_mode=render_mode)


def atari_env(full_env_name, cfg=None, env_config=None, render_mode=None):
    # Sample Factory's Atari envs are the NoFrameskip-v4 ids, which ale_py
    # 0.9 registers only on request under Gymnasium 0.29: in each process.
    import ale_py
    from sf_examples.atari.atari_utils import make_atari_env

    ale_py.register_v0_v4_envs()
    return make_atari_env(full_env_name, cfg, env_config, render_mode=render_mode)


def config(env, extra):
    argv = [f"--env={env}", "--experiment=cml_rl_sampler_bench", "--train_dir=/tmp/sf_train_dir", "--device=cpu"]
    argv += extra
    if env.startswith("atari_"):
        from sf_examples.atari.train_atari import parse_atari_args

        register_env(env, atari_env)
        return parse_atari_args(argv)
    register_env(env, gym_env)
    parser, _ = parse_sf_args(argv=argv)
    return parse_full_cfg(parser, argv)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    env, seconds, extra = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    cfg = config(env, extra)
    sampler = SyncSamplingAPI(cfg, obtain_env_info_in_a_separate_process(cfg))
    sampler.start()
    warmup_until = time.time() + 3.0
    sampled, started = 0, None
    while True:
        trajectory = sampler.get_trajectories_sync()
        if trajectory is None:
            break
        now = time.time()
        if started is None:
            if now >= warmup_until:
                started = now
            continue
        sampled += samples_per_trajectory(trajectory)
        if now - started >= seconds:
            break
    elapsed = time.time() - started if started is not None else None
    sampler.stop()
    if elapsed is None:
        sys.exit(f"sample-factory sampler {env}: no trajectories after the warm-up")
    # Env steps; with frame skip k each is k emulator frames (ALE's own
    # v5 frame skip counts the same way in the other benchmarks).
    what = f"sample-factory 2.1.1 sampler {env} ({cfg.num_workers} workers x {cfg.num_envs_per_worker} envs)"
    print(f"{what:<80} {sampled / elapsed:10.0f} steps/s", flush=True)


if __name__ == "__main__":
    main()
