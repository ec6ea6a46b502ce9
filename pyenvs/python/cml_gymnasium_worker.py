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
(continuous); observations [K, D]; final_observations [K, D]; rewards [K]
float64; terminated [K] uint8; truncated [K] uint8; life_lost [K] uint8.
Observations are uint8
when the observation space is a uint8 Box (1 byte a value, as the env makes
them), float32 otherwise.
With autoreset, an env whose episode ended is reset in the same step: its
row of `observations` is the first of the next episode and
`final_observations` holds the true last one.

Two ways to make the K envs (spec `vectorization`):
- "none": K envs from `gymnasium.make`, each wrapped by `wrappers`, stepped
  one after another;
- "vector_entry_point": one vector env from `gymnasium.make_vec(id, K,
  vectorization_mode="vector_entry_point", autoreset_mode=SAME_STEP)`, the
  env's own batched implementation (ale_py's `AtariVectorEnv`: C++ threads,
  no GIL). Seeds above 2**31 - 1 are folded into [0, 2**31) for it (ALE
  takes C ints).
With `episodic_life`, a step in which `info["lives"]` falls while the game
goes on is a termination for learning: `terminated` and `life_lost` are set,
the env is not reset, and the host keeps counting the game's return.
With `observation_layout` "chw", each observation of shape [C, H, W] is
written as [H, W, C] (cml-rl's networks take channels last).
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


def region_sizes(k, d, action_dim, discrete, obs_itemsize):
    action_bytes = k * 8 if discrete else k * action_dim * 4
    return [action_bytes, k * d * obs_itemsize, k * d * obs_itemsize, k * 8, k, k, k]


# The largest seed ALE's C++ vector env takes (a C int).
ALE_SEED_LIMIT = 2**31


def fold_seed(seed):
    """A u64 seed as a non-negative C int: itself when it fits, else a
    multiplicative hash of it (so seeds that differ above bit 31, such as
    hosts' `host_id << 32`, stay apart)."""
    if seed < ALE_SEED_LIMIT:
        return seed
    return ((seed * 0x9E3779B97F4A7C15) % 2**64) >> 33


def describe(space, np, spaces, what, layout="hwc"):
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

        shape = [int(s) for s in space.shape]
        low, high = space.low, space.high
        if layout == "chw":
            if len(shape) != 3:
                raise ValueError(f"observation_layout = \"chw\" needs rank-3 observations, got shape {space.shape}")
            shape = shape[1:] + shape[:1]
            low, high = chw_to_hwc(np, low), chw_to_hwc(np, high)
        return {
            "kind": "box",
            "shape": shape,
            "dtype": name,
            "low": bounds(low),
            "high": bounds(high),
        }
    raise ValueError(
        f"{what} space {space} ({type(space).__name__}) is not supported: cml-rl takes Box and Discrete spaces"
    )


def chw_to_hwc(np, values):
    """[..., C, H, W] -> [..., H, W, C]."""
    return np.moveaxis(np.asarray(values), -3, -1)


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
    layout = spec.get("observation_layout", "hwc")
    try:
        if spec.get("vectorization", "none") == "vector_entry_point":
            envs = VectorEntryPoint(gym, np, spec, k)
        else:
            envs = SingleEnvs(gym, np, spec, k)
        obs_space = describe(envs.observation_space, np, spaces, "observation", layout)
        act_space = describe(envs.action_space, np, spaces, "action")
    except Exception as e:  # unknown id, bad kwargs, missing dependency of the env
        fail(f"gymnasium.make({spec['id']!r}): {type(e).__name__}: {e}")
    if obs_space["kind"] != "box":
        fail(f"observation space {envs.observation_space} is not supported: cml-rl takes Box observations")
    reply(json.dumps({"observation_space": obs_space, "action_space": act_space}))

    d = int(np.prod(obs_space["shape"], dtype=np.int64))
    obs_dtype = np.uint8 if obs_space["dtype"] == "uint8" else np.float32
    discrete = act_space["kind"] == "discrete"
    action_dim = 1 if discrete else int(np.prod(act_space["shape"], dtype=np.int64))

    line = sys.stdin.readline().split(maxsplit=1)
    if len(line) != 2 or line[0] != "map":
        fail(f"expected `map <path>`, got {line!r}")
    sizes = region_sizes(k, d, action_dim, discrete, np.dtype(obs_dtype).itemsize)
    offsets, at = [], 0
    for size in sizes:
        offsets.append(at)
        at += (size + 63) // 64 * 64
    memory = np.memmap(line[1].strip(), dtype=np.uint8, mode="r+", shape=(at,))

    def view(i, dtype, shape):
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(memory, dtype=dtype, count=count, offset=offsets[i]).reshape(shape)

    # Observations are written through views of the env's own shape (with
    # "chw", the views are transposed: a [K, C, H, W] view of [K, H, W, C] rows).
    shm = Results(
        actions=view(0, np.int64, (k,)) if discrete else view(0, np.float32, (k, action_dim)),
        observations=obs_view(np, view(1, obs_dtype, (k, d)), obs_space["shape"], layout),
        finals=obs_view(np, view(2, obs_dtype, (k, d)), obs_space["shape"], layout),
        rewards=view(3, np.float64, (k,)),
        terminated=view(4, np.uint8, (k,)),
        truncated=view(5, np.uint8, (k,)),
        life_lost=view(6, np.uint8, (k,)),
    )
    lives = Lives(np, k) if spec.get("episodic_life", False) else None
    reply("ok")

    while True:
        line = sys.stdin.readline()
        if not line:
            return  # the host is gone
        words = line.split()
        try:
            if words[0] == "reset":
                infos = envs.reset(None if words[1] == "none" else int(words[1]), shm)
                shm.rewards[:] = 0.0
                shm.terminated[:] = 0
                shm.truncated[:] = 0
                shm.life_lost[:] = 0
                if lives is not None:
                    lives.start(infos)
            elif words[0] == "step":
                infos = envs.step(shm, autoreset, lives is not None)
                if lives is not None:
                    lives.step(infos, shm)
            elif words[0] == "close":
                envs.close()
                reply("ok")
                return
            else:
                raise ValueError(f"unknown command {words[0]!r}")
        except Exception as e:
            reply("error " + json.dumps(f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
            continue
        reply("ok")


class Lives:
    """Episodic life: a life lost while the game goes on ends the episode
    for learning (`terminated`, `life_lost`) but not for the host's return.
    Reads `info["lives"]` of each env (Gymnasium's and ale_py's Atari envs
    report it)."""

    def __init__(self, np, k):
        self.np = np
        self.left = np.zeros(k, dtype=np.int64)

    def read(self, infos):
        if "lives" not in infos:
            raise ValueError("[env] episodic_life: the env reports no `lives` in its info")
        return self.np.asarray(infos["lives"], dtype=self.np.int64).reshape(-1)

    def start(self, infos):
        self.left[:] = self.read(infos)

    def step(self, infos, shm):
        """`infos["lives"]`: each env's lives after the step (for an env reset
        in the step, those of its new game)."""
        np = self.np
        now = self.read(infos)
        ended = np.logical_or(shm.terminated, shm.truncated)
        lost = np.logical_and(np.logical_and(now < self.left, now > 0), ~ended)
        shm.life_lost[:] = lost
        if lost.any():
            shm.terminated[lost] = 1
            # The episode goes on: its "final" observation is the step's own.
            shm.finals[lost] = shm.observations[lost]
        self.left[:] = now


class Results:
    """The numpy views of shared memory one call reads and writes."""

    def __init__(self, **views):
        self.__dict__.update(views)


def lives_info(lives):
    """Single envs' `lives` as a vector env's info has them (none if an env
    reports none)."""
    return {} if not lives or any(n is None for n in lives) else {"lives": lives}


def obs_view(np, rows, shape, layout):
    """[K, D] rows as [K, *env shape]: for "chw", the transposed view
    [K, C, H, W] of [K, H, W, C], so assigning an env's CHW frame stores HWC."""
    view = rows.reshape([rows.shape[0]] + list(shape))
    return np.moveaxis(view, -1, -3) if layout == "chw" else view


class SingleEnvs:
    """K envs from `gymnasium.make`, stepped one after another."""

    def __init__(self, gym, np, spec, k):
        self.np = np
        self.envs = [make_env(gym, spec) for _ in range(k)]
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.start = int(getattr(self.action_space, "start", 0))

    def reset(self, seed, shm):
        lives = []
        for i, env in enumerate(self.envs):
            # seed + i wraps at 2**64, as the Rust envs' seeds do.
            obs, info = env.reset(seed=None if seed is None else (seed + i) % 2**64)
            shm.observations[i] = obs
            lives.append(info.get("lives"))
        return lives_info(lives)

    def step(self, shm, autoreset, want_lives=False):
        np, space = self.np, self.action_space
        discrete = shm.actions.ndim == 1
        lives = []
        for i, env in enumerate(self.envs):
            if discrete:
                action = int(shm.actions[i]) + self.start
            else:
                action = np.asarray(shm.actions[i], dtype=space.dtype).reshape(space.shape)
            obs, reward, term, trunc, info = env.step(action)
            shm.rewards[i] = float(reward)
            shm.terminated[i] = 1 if term else 0
            shm.truncated[i] = 1 if trunc else 0
            if autoreset and (term or trunc):
                shm.finals[i] = obs
                obs, info = env.reset()
            shm.observations[i] = obs
            if want_lives:
                lives.append(info.get("lives"))
        return lives_info(lives)

    def close(self):
        for env in self.envs:
            env.close()


class VectorEntryPoint:
    """One vector env from the id's own vector entry point, reset in the
    same step (`final_obs` in its info holds the true last observations)."""

    def __init__(self, gym, np, spec, k):
        from gymnasium.vector import AutoresetMode

        self.np = np
        self.env = gym.make_vec(
            spec["id"],
            num_envs=k,
            vectorization_mode="vector_entry_point",
            autoreset_mode=AutoresetMode.SAME_STEP,
            **spec.get("make_kwargs", {}),
        )
        mode = self.env.metadata.get("autoreset_mode")
        if mode is not None and AutoresetMode(mode) != AutoresetMode.SAME_STEP:
            raise ValueError(f"the vector env resets in mode {mode}, not SAME_STEP")
        self.observation_space = self.env.single_observation_space
        self.action_space = self.env.single_action_space
        self.start = int(getattr(self.action_space, "start", 0))
        self.k = k

    def reset(self, seed, shm):
        np = self.np
        if seed is None:
            obs, info = self.env.reset()
        else:
            seeds = np.array([fold_seed((seed + i) % 2**64) for i in range(self.k)], dtype=np.int64)
            obs, info = self.env.reset(seed=seeds)
        shm.observations[:] = obs
        return info

    def step(self, shm, autoreset, want_lives=False):
        np = self.np
        actions = shm.actions + self.start if shm.actions.ndim == 1 else shm.actions
        obs, reward, term, trunc, info = self.env.step(np.ascontiguousarray(actions))
        shm.rewards[:] = reward
        shm.terminated[:] = term
        shm.truncated[:] = trunc
        shm.observations[:] = obs
        done = np.logical_or(term, trunc)
        if done.any():
            final = info.get("final_obs")
            if final is None:
                raise ValueError("the vector env ended an episode without `final_obs` in its info")
            # Without autoreset (one env, reset by its caller) the last
            # observation is the step's own.
            rows = shm.finals if autoreset else shm.observations
            for i in np.flatnonzero(done):
                rows[i] = final[i]
        return info

    def close(self):
        self.env.close()


if __name__ == "__main__":
    main()
