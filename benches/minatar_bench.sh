#!/usr/bin/env bash
# MinAtar env steps/s, native cml-envs against the `minatar` 1.0.15 package
# (Environment.act + state), in one run on one core, per game.
# Usage: bash benches/minatar_bench.sh [seconds-per-python-game]
# Needs python3 with venv; installs minatar into .venv-minatar (PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3}
pin="taskset -c 0"
command -v taskset >/dev/null || pin=""

if [ ! -x .venv-minatar/bin/python ]; then
  python3 -m venv .venv-minatar
  .venv-minatar/bin/pip install -q "minatar==1.0.15" "numpy==2.4.6"
fi

cargo bench --no-run --bench env_step >/dev/null 2>&1
$pin cargo bench --bench env_step -- --noplot minatar 2>&1 | grep -E "^minatar|thrpt:" || true
$pin .venv-minatar/bin/python benches/minatar_python.py "$secs" 2>/dev/null > target/minatar_python.json
cat target/minatar_python.json

python3 - <<'PY'
import json
py = json.load(open("target/minatar_python.json"))
def rate(name, elements):
    est = json.load(open(f"target/criterion/minatar/{name}/new/estimates.json"))
    return elements / (est["mean"]["point_estimate"] * 1e-9)
print(f"{'game':15} {'native':>12} {'native x64':>12} {'minatar':>10} {'ratio':>8}")
for game, python in py.items():
    single, vec = rate(game, 1), rate(f"{game}_vec64", 64)
    print(f"{game:15} {single/1e6:9.2f} M/s {vec/1e6:9.2f} M/s {python/1e3:7.0f} k/s {single/python:7.0f}x")
print("ratio = native single env / minatar single env (goal >= 50x)")
PY
