#!/usr/bin/env python3
"""Writes (or checks) deploy/grafana/cml-rl.json, a Grafana dashboard for the
learner's Prometheus metrics, built with Grafana's own Foundation SDK
(`pip install grafana-foundation-sdk`), whose models follow Grafana's
dashboard schema.

  python3 deploy/grafana/make_dashboard.py           # (re)write cml-rl.json
  python3 deploy/grafana/make_dashboard.py --check   # cml-rl.json is what this
      # script builds, and it survives a round trip through the SDK's
      # Dashboard model (a key the schema does not know would be dropped)

Import it in Grafana (Dashboards > New > Import) and pick the Prometheus
data source that scrapes `learner.metrics_port`.
"""
import json
import os
import sys

from grafana_foundation_sdk.builders import common
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as model

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "cml-rl.json")
SOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")

# (title, unit, [(PromQL, legend)]): every cml-rl metric that a run has.
PANELS = [
    ("Mean return of the last 100 episodes", "none", [("cml_episode_mean_return_100", "mean return")]),
    (
        "Env frames per second",
        "none",
        [
            ("rate(cml_env_frames_total[1m])", "produced by the actors"),
            ("rate(cml_frames_consumed_total[1m])", "consumed by the learner"),
        ],
    ),
    ("Learner steps per second", "none", [("rate(cml_learner_steps_total[1m])", "steps")]),
    ("Episodes per second", "none", [("rate(cml_episodes_total[1m])", "episodes")]),
    (
        "Losses (sums over T and B; entropy a per-step mean)",
        "none",
        [
            ("cml_loss_policy", "policy"),
            ("cml_loss_baseline", "baseline"),
            ("cml_loss_entropy", "entropy"),
            ("cml_loss_total_value", "total"),
        ],
    ),
    (
        "Training",
        "none",
        [
            ("cml_train_grad_norm", "grad norm"),
            ("cml_train_explained_variance", "explained variance"),
            ("cml_vtrace_mean_rho", "mean rho"),
        ],
    ),
    (
        "Policy lag and replay ratio",
        "none",
        [("cml_train_policy_lag", "policy lag (versions)"), ("cml_replay_ratio", "replay ratio")],
    ),
    ("Learning rate", "none", [("cml_train_learning_rate", "learning rate")]),
    ("Replay size (unrolls)", "none", [("cml_replay_size", "shard {{shard}}")]),
    ("Replay memory", "bytes", [("cml_replay_bytes", "shard {{shard}}")]),
    (
        "Replay inserts and samples per second",
        "none",
        [
            ("rate(cml_replay_inserted_total[1m])", "inserted, shard {{shard}}"),
            ("rate(cml_replay_sampled_total[1m])", "sampled, shard {{shard}}"),
        ],
    ),
    (
        "Refused inserts per second, by reason",
        "none",
        [("sum by (reason) (rate(cml_replay_rejected_total[5m]))", "{{reason}}")],
    ),
]


def build():
    board = (
        db.Dashboard("cml-rl")
        .uid("cml-rl")
        .tags(["cml-rl", "reinforcement-learning"])
        .refresh("10s")
        .time("now-1h", "now")
        .with_variable(db.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    for i, (title, unit, queries) in enumerate(PANELS):
        legend = (
            common.VizLegendOptions()
            .show_legend(True)
            .display_mode(common_model.LegendDisplayMode.LIST)
            .placement(common_model.LegendPlacement.BOTTOM)
        )
        panel = timeseries.Panel().title(title).datasource(SOURCE).unit(unit).height(8).span(12).legend(legend)
        for j, (expr, legend) in enumerate(queries):
            panel = panel.with_target(prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + j)))
        board = board.with_panel(panel)
    return json.loads(json.dumps(board.build(), cls=JSONEncoder))


def main():
    built = build()
    if sys.argv[1:] == ["--check"]:
        with open(OUT) as f:
            on_disk = json.load(f)
        if on_disk != built:
            sys.exit(f"{OUT} differs from what make_dashboard.py builds; run it to rewrite")
        again = json.loads(json.dumps(model.Dashboard.from_json(on_disk), cls=JSONEncoder))
        if again != on_disk:
            sys.exit(f"{OUT} does not survive a round trip through the SDK's Dashboard model")
        print(f"{OUT}: {len(on_disk['panels'])} panels, matches the builder and the SDK's dashboard model")
        return
    with open(OUT, "w") as f:
        json.dump(built, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
