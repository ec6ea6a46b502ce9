#!/usr/bin/env python3
"""Does a config reach its target, hold it, and end on a policy that plays well?

For each seed: trains CONFIG with `cml-rl train` (the seed and
`train.continue_after_target_s` set, everything else as written), then reads
the run's metrics.csv and evaluates its final checkpoint greedily.
Reported per run:
  - reach_s / reach_frames: wall seconds and env frames (produced by the
    actors) at the first report whose mean return over the last 100
    episodes is >= the config's train.target_return;
  - hold_min: the lowest mean return at any report in the HOLD seconds after
    that (the run stops HOLD seconds after reaching the target);
  - eval: how many of EPISODES greedy eval episodes (`cml-rl eval`, one seed
    each) scored at least EVAL_SCORE (default: the env's best, 500 for
    CartPole-v1).

Usage: python3 benches/hold_target.py CONFIG [--seeds 0,1,2] [--hold 60]
       [--episodes 20] [--eval-score 500] [--bin target/release/cml-rl]
Build the binary first: cargo build --release
"""
import argparse
import csv
import glob
import json
import os
import subprocess
import sys
import tempfile
import tomllib


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise ValueError(f"cannot write {v!r} as TOML")


def toml_dump(table, prefix=""):
    """A TOML document for `table` (scalars and arrays first, then sub-tables)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for k, v in table.items():
        if isinstance(v, dict):
            name = f"{prefix}{k}"
            lines += ["", f"[{name}]", toml_dump(v, name + ".")]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--hold", type=float, default=60.0)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--eval-score", type=float, default=500.0)
    p.add_argument("--hold-min", type=float, default=450.0, help="the mean a run must keep in the hold window")
    p.add_argument("--bin", default="target/release/cml-rl")
    p.add_argument("--max-seconds", type=float, default=600.0, help="give up on a run after this long")
    args = p.parse_args()

    with open(args.config, "rb") as f:
        base = tomllib.load(f)
    target = base.get("train", {}).get("target_return")
    if target is None:
        sys.exit(f"{args.config}: train.target_return is not set")
    work = tempfile.mkdtemp(prefix="cml-hold-")
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        config = json.loads(json.dumps(base))
        config["seed"] = seed
        train = config.setdefault("train", {})
        train["continue_after_target_s"] = args.hold
        train["max_seconds"] = args.max_seconds
        train["runs_dir"] = os.path.join(work, "runs")
        path = os.path.join(work, f"seed{seed}.toml")
        with open(path, "w") as f:
            f.write(toml_dump(config) + "\n")
        before = set(glob.glob(os.path.join(work, "runs", "*")))
        out = subprocess.run([args.bin, "train", path], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"seed {seed}: cml-rl train failed:\n{out.stdout}\n{out.stderr}")
        (run_dir,) = set(glob.glob(os.path.join(work, "runs", "*"))) - before
        with open(os.path.join(run_dir, "metrics.csv")) as f:
            # Reports over a full window of 100 episodes, as the learner's stop test.
            metrics = [
                r for r in csv.DictReader(f) if r["mean_return_100"] not in ("", "nan") and int(r["episodes"]) >= 100
            ]
        reached = next((r for r in metrics if float(r["mean_return_100"]) >= target), None)
        row = {"seed": seed, "run_dir": run_dir}
        if reached is None:
            row.update(reach_s=None, reach_frames=None, hold_min=None, hold_s=None)
        else:
            t0 = float(reached["wall_s"])
            after = [float(r["mean_return_100"]) for r in metrics if t0 <= float(r["wall_s"]) <= t0 + args.hold]
            row.update(
                reach_s=round(t0, 1),
                reach_frames=int(reached["env_frames"]),
                hold_min=round(min(after), 1),
                hold_s=round(float(metrics[-1]["wall_s"]) - t0, 1),
            )
        checkpoints = sorted(glob.glob(os.path.join(run_dir, "checkpoints", "ckpt-*.safetensors")))
        if not checkpoints:
            sys.exit(f"seed {seed}: {run_dir} has no checkpoint")
        ev = subprocess.run(
            [args.bin, "eval", checkpoints[-1], "--episodes", str(args.episodes), "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        returns = json.loads(ev.stdout)["returns"]
        row["eval"] = f"{sum(r >= args.eval_score for r in returns)}/{len(returns)}"
        row["eval_mean"] = round(sum(returns) / len(returns), 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    held = [r for r in rows if r["hold_min"] is not None]
    print(
        json.dumps(
            {
                "config": args.config,
                "runs": len(rows),
                "reached": len(held),
                "held": sum(r["hold_min"] >= args.hold_min for r in held),
                "hold_min_required": args.hold_min,
                "worst_hold_min": min((r["hold_min"] for r in held), default=None),
                "eval": [r["eval"] for r in rows],
            }
        )
    )


if __name__ == "__main__":
    main()
