#!/usr/bin/env bash
# Learner samples/s on CPU, candle (ours) against PyTorch, in one run.
# Usage: bash benches/learner_bench.sh [seconds-for-pytorch]
# Needs python3 with venv; installs torch into .venv-torch (PyPI; the default
# wheel runs on CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
if [ ! -x .venv-torch/bin/python ]; then
  python3 -m venv .venv-torch
  .venv-torch/bin/pip install -q torch
fi
cargo bench --no-run --bench learner_step >/dev/null 2>&1
cargo bench --bench learner_step -- --noplot 2>&1 | grep -E "^learner|time:|thrpt:" || true
.venv-torch/bin/python benches/torch_learner_step.py "$secs" > target/torch_learner_step.json
cat target/torch_learner_step.json
python3 - <<'PY'
import json
torch = json.load(open("target/torch_learner_step.json"))
est = json.load(open("target/criterion/learner/mlp64x64_b32_t20/new/estimates.json"))
ours = 640 / (est["mean"]["point_estimate"] * 1e-9)
print(f"cml-learner (candle, CPU): {ours:10.0f} samples/s")
print(f"PyTorch {torch['torch_version']} (CPU, {torch['threads']} threads): {torch['samples_per_s']:10.0f} samples/s")
print(f"ratio: {ours / torch['samples_per_s']:.2f}x (goal >= 1x)")
PY
