#!/usr/bin/env bash
# Ape-X DQN (configs/cartpole-apex.toml) beside Stable-Baselines3's DQN with
# rl-baselines3-zoo's CartPole-v1 hyperparameters, on this machine in one
# run, seed by seed, one at a time (each gets the whole machine): seconds
# from launch and env steps until the mean return of the last 100 training
# episodes reaches 475, and a greedy evaluation of each final policy.
# Usage: bash benches/apex_vs_sb3.sh [seeds...]   (default 0 1 2)
# Installs stable-baselines3 and torch into .venv-torch (PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(0 1 2)
if [ ! -x .venv-torch/bin/python ]; then
  python3 -m venv .venv-torch
fi
.venv-torch/bin/pip install -q torch "stable-baselines3==2.*" "gymnasium>=1.0"
cargo build --release --quiet
bin=target/release/cml-rl
out=target/apex_vs_sb3
rm -rf "$out" && mkdir -p "$out"
for seed in "${seeds[@]}"; do
  sed -e "s/^seed = 0$/seed = $seed/" \
      -e "s|^max_seconds = 120.0$|max_seconds = 120.0\nruns_dir = \"$out/runs-$seed\"|" \
      configs/cartpole-apex.toml > "$out/apex-$seed.toml"
  RUST_LOG=warn "$bin" train "$out/apex-$seed.toml" > "$out/apex-$seed.log" 2>&1
  ckpt=$(ls "$out/runs-$seed"/*/checkpoints/*.safetensors | tail -1)
  "$bin" eval "$ckpt" --episodes 20 --json > "$out/apex-$seed-eval.json" 2>/dev/null
  .venv-torch/bin/python benches/sb3_dqn_cartpole.py "$seed" 120 > "$out/sb3-$seed.json"
done
python3 - "$out" "${seeds[@]}" <<'PY'
import json, re, sys
out, seeds = sys.argv[1], sys.argv[2:]
print(f"{'seed':>4} | {'Ape-X: s to 475':>15} {'env steps':>10} {'greedy':>7} | {'SB3 DQN: s to 475':>17} {'env steps':>10} {'greedy':>7}")
for seed in seeds:
    log = open(f"{out}/apex-{seed}.log").read()
    m = re.search(r"reached 475 after ([0-9.]+) s: (\d+) env frames", log)
    ours = (f"{float(m.group(1)):15.1f} {int(m.group(2)):10d}" if m else f"{'not reached':>15} {'':>10}")
    ours_eval = json.load(open(f"{out}/apex-{seed}-eval.json"))["mean_return"]
    sb3 = json.load(open(f"{out}/sb3-{seed}.json"))
    r = sb3["reached"]
    theirs = (f"{r['seconds']:17.1f} {r['env_steps']:10d}" if r
              else f"{'not in ' + format(sb3['stopped_s'], '.0f') + ' s':>17} {sb3['env_steps']:10d}")
    print(f"{seed:>4} | {ours} {ours_eval:7.1f} | {theirs} {sb3['greedy_eval_mean']:7.1f}")
PY
