#!/usr/bin/env bash
# Python envs through cml-rl's actor host against the bare env, in one run:
# env steps/s delivered into replay (inference, unroll building, MAC and
# delivery over loopback ZeroMQ included) beside Gymnasium's own vector
# envs stepping random actions with no learning at all.
#
#   bash benches/python_envs.sh [seconds-per-point]
#
# Needs a Python with gymnasium[box2d], ale-py and opencv-python-headless
# (Gymnasium's AtariPreprocessing): $CML_PYTHON, else .venv-ci/bin/python
# (see .ci/run). Peers, if given: $PEERS_PYTHON, a Python with envpool;
# $SF_PYTHON, a Python with Sample Factory 2.1.1 (its sampler alone,
# benches/sample_factory_sampler.py).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
python=${CML_PYTHON:-$PWD/.venv-ci/bin/python}
export CML_PYTHON=$python
cargo bench --no-run --bench actor_host >/dev/null 2>&1

host() { # env torso workers total splits [env toml] [label]
  CML_BENCH_ENV=$1 CML_BENCH_TORSO=$2 CML_BENCH_WORKERS=$3 CML_BENCH_ACTORS=$4 CML_BENCH_SPLITS=$5 \
    CML_BENCH_ENV_TOML=${6:-} CML_BENCH_SHARDS=1 CML_BENCH_SECONDS=$secs cargo bench --bench actor_host 2>/dev/null |
    awk -v what="cml-rl $1 ($2, $3 workers x $5 splits, $4 envs${7:+, $7})" \
      '$1 ~ /^[0-9]+$/ { printf "%-80s %10.0f steps/s\n", what, $2 }'
}
bare() { # id mode num_envs
  "$python" benches/gymnasium_vector.py "$1" "$2" "$3" "$secs"
}

# Two processes of n envs each, at once: the bare env on both cores.
bare_twice() { # id num_envs
  "$python" benches/gymnasium_vector.py "$1" sync "$2" "$secs" > "$tmp/a" &
  "$python" benches/gymnasium_vector.py "$1" sync "$2" "$secs" > "$tmp/b"
  wait
  cat "$tmp/a" "$tmp/b" | awk -v what="gymnasium $1 (2 processes, sync, $2 envs each)" \
    '{ s += $(NF - 1) } END { printf "%-72s %10.0f steps/s\n", what, s }'
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== LunarLander-v3"
bare LunarLander-v3 async 2
bare LunarLander-v3 async 16
bare LunarLander-v3 async 64
bare LunarLander-v3 sync 64
bare_twice LunarLander-v3 32
sf() { # env [sf args...]
  if [ -n "${SF_PYTHON:-}" ]; then
    "$SF_PYTHON" benches/sample_factory_sampler.py "$1" "$secs" "${@:2}" 2>/dev/null | grep "steps/s" || true
  fi
}
sf LunarLander-v2
sf LunarLander-v2 --num_workers=2 --num_envs_per_worker=32
host gymnasium:LunarLander-v3 mlp 1 64 1
host gymnasium:LunarLander-v3 mlp 2 64 1
host gymnasium:LunarLander-v3 mlp 2 64 2

echo "== ALE/Pong-v5 (84x84 grayscale, frame skip 4, stack 4)"
bare ALE/Pong-v5 async 2
bare ALE/Pong-v5 async 8
bare ALE/Pong-v5 vector_entry_point 32
if [ -n "${PEERS_PYTHON:-}" ]; then
  "$PEERS_PYTHON" benches/envpool_vector.py Pong-v5 32 2 "$secs"
fi
sf atari_pong
ale() { # ALE threads per worker
  printf 'import = ["ale_py"]\nvectorization = "vector_entry_point"\nobservation_layout = "chw"\nkwargs = { num_threads = %s }' "$1"
}
host gymnasium:ALE/Pong-v5 nature 1 32 1 "$(ale 1)" "1 ALE thread"
host gymnasium:ALE/Pong-v5 nature 1 32 1 "$(ale 2)" "2 ALE threads"
host gymnasium:ALE/Pong-v5 nature 2 32 1 "$(ale 1)" "1 ALE thread each"
host gymnasium:ALE/Pong-v5 nature 1 32 2 "$(ale 1)" "1 ALE thread per split"
host gymnasium:ALE/Pong-v5 nature 1 32 2 "$(ale 2)" "2 ALE threads per split"
