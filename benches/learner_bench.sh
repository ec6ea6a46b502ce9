#!/usr/bin/env bash
# Learner samples/s on CPU, candle (ours) against PyTorch, in one run, each
# on one and on two threads: the
# IMPALA update (MLP, the MinAtar CNN, the Nature CNN) and the Ape-X DQN update.
# Usage: bash benches/learner_bench.sh [seconds-for-pytorch]
# Needs python3 with venv; installs torch into .venv-torch (PyPI; the default
# wheel runs on CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
if ! .venv-torch/bin/python -c "import torch, numpy" 2>/dev/null; then
  python3 -m venv .venv-torch
  .venv-torch/bin/pip install -q torch numpy
fi
cargo bench --no-run --bench learner_step >/dev/null 2>&1
cargo bench --bench learner_step -- --noplot 2>&1 | grep -E "^learner|time:|thrpt:" || true
for script in torch_learner_step torch_apex_step; do
  for threads in 1 2; do
    .venv-torch/bin/python "benches/$script.py" "$secs" "$threads" > "target/${script}_$threads.json"
  done
done
for threads in 1 2; do
  for net in minatar nature; do
    .venv-torch/bin/python benches/torch_learner_step.py "$secs" "$threads" $net > "target/torch_${net}_step_$threads.json"
  done
done
python3 - <<'PY'
import json
for name, script, bench, samples in [
    ("IMPALA", "torch_learner_step", "mlp64x64_b32_t20", 640),
    ("Ape-X DQN", "torch_apex_step", "apex_mlp64x64_b32_t20", 640),
    ("IMPALA, MinAtar net", "torch_minatar_step", "minatar_b32_t20", 640),
    ("IMPALA, Nature net (B=8, T=5)", "torch_nature_step", "nature_b8_t5", 40),
]:
    runs = [json.load(open(f"target/{script}_{n}.json")) for n in (1, 2)]
    torch = max(runs, key=lambda r: r["samples_per_s"])
    ours = {}
    for threads in (1, 2):
        name_t = bench if threads == 1 else f"{bench}_threads{threads}"
        path = f"target/criterion/learner/{name_t}/new/estimates.json"
        try:
            est = json.load(open(path))
        except FileNotFoundError:
            continue  # Ape-X runs on one thread only
        ours[threads] = samples / (est["mean"]["point_estimate"] * 1e-9)
        print(f"{name}: cml-learner (candle, CPU, learner.cpu_threads = {threads}): {ours[threads]:10.0f} samples/s")
    for r in runs:
        print(f"{name}: PyTorch {r['torch_version']} (CPU, {r['threads']} threads): {r['samples_per_s']:10.0f} samples/s")
    for r in runs:
        if r["threads"] in ours:
            print(f"{name}: ratio at {r['threads']} thread(s): {ours[r['threads']] / r['samples_per_s']:.2f}x")
    print(f"{name}: ratio of our best to PyTorch's best: {max(ours.values()) / torch['samples_per_s']:.2f}x (goal >= 1x)")
PY
