"""Stable-Baselines3 DQN on CartPole-v1 with rl-baselines3-zoo's tuned
hyperparameters (hyperparams/dqn.yml: lr 2.3e-3, batch 64, buffer 100k,
learning_starts 1000, gamma 0.99, target_update_interval 10, train_freq 256,
gradient_steps 128, exploration_fraction 0.16 of 50k steps, final eps 0.04,
net_arch [256, 256]), timed from process start like `cml-rl train`: the
seconds and env steps until the mean return of the last 100 training
episodes first reaches TARGET, then a greedy evaluation of the final model.
Prints one JSON object.

Usage: sb3_dqn_cartpole.py SEED [MAX_SECONDS] [TARGET] [MAX_STEPS]
"""

import time

LAUNCHED = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from stable_baselines3 import DQN  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402


class StopAtTarget(BaseCallback):
    def __init__(self, target, max_seconds):
        super().__init__()
        self.target, self.max_seconds = target, max_seconds
        self.reached = None

    def _on_step(self):
        episodes = self.model.ep_info_buffer
        if self.reached is None and len(episodes) > 0:
            mean = float(np.mean([e["r"] for e in episodes]))
            if mean >= self.target:
                self.reached = {
                    "seconds": time.perf_counter() - LAUNCHED,
                    "env_steps": self.num_timesteps,
                    "mean_return_100": mean,
                }
                return False
        return time.perf_counter() - LAUNCHED < self.max_seconds


def main():
    seed = int(sys.argv[1])
    max_seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 120.0
    target = float(sys.argv[3]) if len(sys.argv) > 3 else 475.0
    max_steps = int(float(sys.argv[4])) if len(sys.argv) > 4 else 200_000
    env = gym.make("CartPole-v1")
    model = DQN(
        "MlpPolicy",
        env,
        learning_rate=2.3e-3,
        batch_size=64,
        buffer_size=100_000,
        learning_starts=1000,
        gamma=0.99,
        target_update_interval=10,
        train_freq=256,
        gradient_steps=128,
        # zoo: exploration_fraction 0.16 of n_timesteps = 50k
        exploration_fraction=0.16 * 50_000 / max_steps,
        exploration_final_eps=0.04,
        policy_kwargs=dict(net_arch=[256, 256]),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    callback = StopAtTarget(target, max_seconds)
    model.learn(total_timesteps=max_steps, callback=callback)
    stopped = time.perf_counter() - LAUNCHED
    episodes = model.ep_info_buffer
    final_mean = float(np.mean([e["r"] for e in episodes])) if episodes else None
    # Greedy evaluation of the final model, 20 episodes.
    eval_env = gym.make("CartPole-v1")
    returns = []
    for i in range(20):
        obs, _ = eval_env.reset(seed=10_000 + i)
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = eval_env.step(int(action))
            total += reward
            done = terminated or truncated
        returns.append(total)
    print(
        json.dumps(
            {
                "seed": seed,
                "torch_threads": torch.get_num_threads(),
                "reached": callback.reached,
                "stopped_s": stopped,
                "env_steps": model.num_timesteps,
                "final_mean_return_100": final_mean,
                "greedy_eval_mean": float(np.mean(returns)),
            }
        )
    )


if __name__ == "__main__":
    main()
