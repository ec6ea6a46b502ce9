"""cml-rl's Python env worker: K Gymnasium envs stepped in one process.

The actor host starts this module as `python -u -c <source> <spec json>`; it
needs only `gymnasium` and `numpy`. The protocol (pyenvs/README in
ARCHITECTURE.md, "Python environments"):

1. The worker makes its K envs from the spec and writes one JSON line with
   the spaces (or {"error": ...}) to its protocol stream (the original
   stdout; Python's `sys.stdout` is sent to stderr so that prints from env
   code cannot corrupt it).
2. The host creates the shared-memory file the spaces size and answers
   `map <path>`; the worker maps it with numpy views and answers `ok`.
3. Then, one line each way per call: `reset <seed>|reset none`, `step`,
   `close`. Each is answered with `ok` once the results are in shared
   memory, or `error <json string>`. Nothing else crosses the pipe.

Shared memory layout (little-endian, each region starts at a multiple of 64
bytes, in this order): actions [K] int64 (discrete) or [K, A] float32
(continuous); observations [K, D] float32; final_observations [K, D]
float32; rewards [K] float64; terminated [K] uint8; truncated [K] uint8.
With autoreset, an env whose episode ended is reset in the same step: its
row of `observations` is the first of the next episode and
`final_observations` holds the true last one.
"""

import json
import os
import sys
import traceback

PROTOCOL = None
# Modules that register envs, and the pip package that brings each.
PIP_PACKAGES = {"ale_py": "ale-py", "gymnasium": "gymnasium", "numpy": "numpy", "Box2D": "gymnasium[box2d]"}


def reply(line):
    PROTOCOL.write(line + "\n")
    PROTOCOL.flush()


def fail(message):
    reply(json.dumps({"error": message}))
    sys.exit(1)


def region_sizes(k, d, action_dim, discrete):
    action_bytes = k * 8 if discrete else k * action_dim * 4
    return [action_bytes, k * d * 4, k * d * 4, k * 8, k, k]


def describe(space, np, spaces, what):
    if isinstance(space, spaces.Discrete):
        return {"kind": "discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Box):
        dtype = np.dtype(space.dtype)
        if dtype == np.uint8:
            name = "uint8"
        elif dtype.kind == "f" or dtype.kind in "iu":
            name = "float32"
        else:
            raise ValueError(f"{what} space {space} has dtype {dtype}; supported: float, int and uint8 Boxes")

        def bounds(values):
            flat = np.asarray(values, dtype=np.float64).reshape(-1)
            return [float(v) if np.isfinite(v) else None for v in flat]

        return {
            "kind": "box",
            "shape": [int(s) for s in space.shape],
            "dtype": name,
            "low": bounds(space.low),
            "high": bounds(space.high),
        }
    raise ValueError(
        f"{what} space {space} ({type(space).__name__}) is not supported: cml-rl takes Box and Discrete spaces"
    )


def make_env(gym, spec):
    env = gym.make(spec["id"], **spec.get("make_kwargs", {}))
    for wrapper in spec.get("wrappers", []):
        name, args = wrapper["name"], wrapper.get("args", {})
        cls = getattr(gym.wrappers, name, None)
        if cls is None:
            raise ValueError(f"unknown wrapper `{name}`: not in gymnasium.wrappers")
        env = cls(env, **args)
    return env


def main():
    global PROTOCOL
    # The protocol stream is a private copy of stdout; prints go to stderr.
    PROTOCOL = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    spec = json.loads(sys.argv[1])
    try:
        import numpy as np
        import gymnasium as gym
        from gymnasium import spaces
    except ImportError as e:
        fail(f"{e}: install it with `pip install {PIP_PACKAGES.get(e.name, e.name)}` for {sys.executable}")
    for module in spec.get("import", []):
        try:
            __import__(module)
        except ImportError as e:
            fail(f"[env] import: {e}: install it with `pip install {PIP_PACKAGES.get(e.name, e.name)}` for {sys.executable}")
    k = int(spec["num_envs"])
    autoreset = bool(spec["autoreset"])
    try:
        envs = [make_env(gym, spec) for _ in range(k)]
        obs_space = describe(envs[0].observation_space, np, spaces, "observation")
        act_space = describe(envs[0].action_space, np, spaces, "action")
    except Exception as e:  # unknown id, bad kwargs, missing dependency of the env
        fail(f"gymnasium.make({spec['id']!r}): {type(e).__name__}: {e}")
    if obs_space["kind"] != "box":
        fail(f"observation space {envs[0].observation_space} is not supported: cml-rl takes Box observations")
    reply(json.dumps({"observation_space": obs_space, "action_space": act_space}))

    d = int(np.prod(obs_space["shape"], dtype=np.int64))
    discrete = act_space["kind"] == "discrete"
    action_dim = 1 if discrete else int(np.prod(act_space["shape"], dtype=np.int64))
    start = act_space.get("start", 0)
    action_shape = envs[0].action_space.shape
    action_dtype = envs[0].action_space.dtype

    line = sys.stdin.readline().split(maxsplit=1)
    if len(line) != 2 or line[0] != "map":
        fail(f"expected `map <path>`, got {line!r}")
    sizes = region_sizes(k, d, action_dim, discrete)
    offsets, at = [], 0
    for size in sizes:
        offsets.append(at)
        at += (size + 63) // 64 * 64
    memory = np.memmap(line[1].strip(), dtype=np.uint8, mode="r+", shape=(at,))

    def view(i, dtype, shape):
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(memory, dtype=dtype, count=count, offset=offsets[i]).reshape(shape)

    actions = view(0, np.int64, (k,)) if discrete else view(0, np.float32, (k, action_dim))
    observations = view(1, np.float32, (k, d))
    finals = view(2, np.float32, (k, d))
    rewards = view(3, np.float64, (k,))
    terminated = view(4, np.uint8, (k,))
    truncated = view(5, np.uint8, (k,))
    reply("ok")

    while True:
        line = sys.stdin.readline()
        if not line:
            return  # the host is gone
        words = line.split()
        try:
            if words[0] == "reset":
                seed = None if words[1] == "none" else int(words[1])
                for i, env in enumerate(envs):
                    # seed + i wraps at 2**64, as the Rust envs' seeds do.
                    obs, _ = env.reset(seed=None if seed is None else (seed + i) % 2**64)
                    observations[i] = np.asarray(obs).reshape(-1)
                rewards[:] = 0.0
                terminated[:] = 0
                truncated[:] = 0
            elif words[0] == "step":
                for i, env in enumerate(envs):
                    if discrete:
                        action = int(actions[i]) + start
                    else:
                        action = np.asarray(actions[i], dtype=action_dtype).reshape(action_shape)
                    obs, reward, term, trunc, _ = env.step(action)
                    rewards[i] = float(reward)
                    terminated[i] = 1 if term else 0
                    truncated[i] = 1 if trunc else 0
                    observations[i] = np.asarray(obs).reshape(-1)
                    if autoreset and (term or trunc):
                        finals[i] = observations[i]
                        obs, _ = env.reset()
                        observations[i] = np.asarray(obs).reshape(-1)
            elif words[0] == "close":
                for env in envs:
                    env.close()
                reply("ok")
                return
            else:
                raise ValueError(f"unknown command {words[0]!r}")
        except Exception as e:
            reply("error " + json.dumps(f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
            continue
        reply("ok")


if __name__ == "__main__":
    main()
