"""MinAtar steps/s of the `minatar` 1.0.15 package on one core: one
`Environment` per game, `act` with a uniform random action from the minimal
action set, then `state()`, `reset()` at the end of an episode (the loop a
Python actor runs). Prints one JSON object, steps/s per game.

Usage: python benches/minatar_python.py [seconds-per-game]
"""

import json
import sys
import time

import numpy as np
from minatar import Environment

GAMES = ["asterix", "breakout", "freeway", "seaquest", "space_invaders"]


def steps_per_second(game, seconds):
    env = Environment(game, sticky_action_prob=0.1, difficulty_ramping=True)
    env.seed(0)
    env.reset()
    actions = env.minimal_action_set()
    rng = np.random.RandomState(1)
    block = rng.randint(len(actions), size=1 << 16)
    steps, i = 0, 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(1000):
            _, terminal = env.act(actions[block[i]])
            env.state()
            i = (i + 1) & 0xFFFF
            if terminal:
                env.reset()
        steps += 1000
        now = time.perf_counter()
        if now >= deadline:
            return steps / (now - start)


if __name__ == "__main__":
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    print(json.dumps({game: steps_per_second(game, secs) for game in GAMES}))
