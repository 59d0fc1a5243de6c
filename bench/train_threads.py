"""Where a reward training step's time goes, on one core and on two: why the first run builds
two models at once on a core each (training/first_run.py) rather than one at a time on both.

Trains the default reward preset for `--steps` steps on `--threads` cores with torch's profiler
over the steps after the first five, and prints the mean step time and the operators that took
the longest. Run it once per core count, nothing else running; checkpoints go to a temp dir.

    .venv/bin/python -m bench.train_threads --threads 2 --steps 20
    .venv/bin/python -m bench.train_threads --threads 1 --steps 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from training import trainer
from training.config import PRESETS
from training.reward import train_reward

WARM = 5  # steps before the profiler starts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=12, help="Operators shown.")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    if args.steps <= WARM:
        parser.error(f"--steps must be above {WARM}: the profiler starts after step {WARM}")

    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
    seconds: list[float] = []
    step = trainer.Trainer._optimizer_step

    def timed(self: trainer.Trainer) -> dict[str, float]:
        if self.step == WARM:
            profiler.__enter__()
        began = time.perf_counter()
        record = step(self)
        seconds.append(time.perf_counter() - began)
        if self.step == args.steps:
            profiler.__exit__(None, None, None)
        return record

    trainer.Trainer._optimizer_step = timed  # type: ignore[method-assign]
    config = replace(PRESETS["default"], threads=args.threads, checkpoint_every=10**6)
    with tempfile.TemporaryDirectory() as output:
        train_reward(config, Path(output), args.data_dir, stop_at=args.steps)
    measured = seconds[WARM:]
    print(f"{args.threads} thread(s): {sum(measured) / len(measured):.3f} s a step (mean of "
          f"{len(measured)} steps after {WARM})")
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
