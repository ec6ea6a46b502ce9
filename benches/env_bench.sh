#!/usr/bin/env bash
# CartPole steps/s, cml-envs against Gymnasium 1.4, in one run on one core.
# Usage: bash benches/env_bench.sh [seconds-per-python-bench]
# Needs python3 with venv; installs gymnasium into .venv-bench (PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
pin="taskset -c 0"
command -v taskset >/dev/null || pin=""

if [ ! -x .venv-bench/bin/python ]; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q "gymnasium==1.4.0" numpy
fi

cargo bench --no-run --bench env_step >/dev/null 2>&1
$pin cargo bench --bench env_step -- --noplot 2>&1 | grep -E "^cartpole|time:|thrpt:" || true
$pin .venv-bench/bin/python benches/gymnasium_cartpole.py "$secs" > target/gymnasium_cartpole.json
cat target/gymnasium_cartpole.json

python3 - <<'PY'
import json
gym = json.load(open("target/gymnasium_cartpole.json"))
def rate(name, elements):
    est = json.load(open(f"target/criterion/cartpole/{name}/new/estimates.json"))
    return elements / (est["mean"]["point_estimate"] * 1e-9)
single = rate("single", 1)
raw = rate("vec1024_raw", 1024)
native = rate("vec1024_native", 1024)
reg = rate("vec1024_registry", 1024)
print(f"cml-envs single env:         {single/1e6:8.2f} M steps/s")
print(f"cml-envs 1024 envs (raw):     {raw/1e6:8.2f} M steps/s")
print(f"cml-envs 1024 envs (make):    {reg/1e6:8.2f} M steps/s")
print(f"cml-envs 1024 envs (native):  {native/1e6:8.2f} M steps/s")
print(f"gymnasium single env:         {gym['single_steps_per_s']/1e6:8.4f} M steps/s")
print(f"gymnasium make_vec 1024:      {gym['vec1024_steps_per_s']/1e6:8.2f} M steps/s")
print(f"ratio single / gymnasium single:        {single/gym['single_steps_per_s']:8.1f}x  (goal >= 100x)")
print(f"ratio 1024 native / gymnasium vectorized: {native/gym['vec1024_steps_per_s']:8.2f}x  (goal >= 3x)")
print(f"ratio 1024 raw / gymnasium vectorized:  {raw/gym['vec1024_steps_per_s']:8.2f}x")
print(f"ratio 1024 make / gymnasium vectorized: {reg/gym['vec1024_steps_per_s']:8.2f}x")
PY
