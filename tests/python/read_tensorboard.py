"""Reads a TensorBoard log dir with tensorboard's own EventAccumulator and
prints its scalars as JSON (used by tests/tensorboard_events.rs).

usage: read_tensorboard.py LOG_DIR
prints: {"file_version": float|null, "tags": [...],
         "scalars": {tag: [[wall_time, step, value], ...]}}
"""

import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    ea = EventAccumulator(sys.argv[1])
    ea.Reload()
    tags = sorted(ea.Tags()["scalars"])
    scalars = {tag: [[e.wall_time, e.step, e.value] for e in ea.Scalars(tag)] for tag in tags}
    print(json.dumps({"file_version": ea.file_version, "tags": tags, "scalars": scalars}))


if __name__ == "__main__":
    main()
