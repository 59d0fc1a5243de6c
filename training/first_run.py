"""`alignserve models build-defaults`: the default models the store lacks, built from the data,
stage by stage, with the overall progress. `make serve` runs it before serving.

Each default model is two stages: train (`alignserve train TASK --preset default`, resumed from
its checkpoint when a run was interrupted; skipped when a finished run is in runs/NAME) and
export (ONNX, the parity gate and the int8 check, then the store). Every stage announces
itself as "stage N of M" with what it does and the time the whole build has left, estimated from
the stage times measured on a 2-core CPU (ESTIMATES) and scaled by how fast this machine ran the
stages so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models import store


@dataclass(frozen=True)
class Default:
    name: str  # the store name, which the service's settings point at
    task: str
    train_s: float  # one run measured on the project's 2-core CPU
    export_s: float
    train_flags: tuple[str, ...] = ()
    what: str = ""


# Stage times of the first `make serve` on a fresh clone, 2-core CPU, 2026-11-28
# (docs/measurements.md, "First run and test suite": 19 min 36 s to ready; the same CPU model
# ran about a quarter slower on other days). Since 2026-12-04 the reward export's int8 check
# reads every validation pair with int8 alone (fp32's scores come from training; it used to
# stop after 256-512 pairs on a rejection): 27 s against 23 s on that day's CPU, so the 44 s
# of then scaled by as much.
# Since 2026-12-05 the moderation classifier trains on 800 counter-speech texts more and
# evaluates clean requests too: 3 min 48 s against 3 min 24 s on that day's CPU, so 386 s * 1.12.
# Since 2026-12-06 it trains on 1,600 misspelt copies more: against the reward stage of the same
# first run, its stage took 1.10 times as long as the day before (Intel Xeon), so 432 s * 1.10.
DEFAULTS = (
    Default("reward", "reward", 489, 52, what="reward model: ~2,400 pooled preference and "
            "contrast pairs, then calibration and every test split"),
    Default("moderation", "moderation", 476, 49, what="moderation classifier: 16,000 labelled "
            "texts, 800 counter-speech and 1,600 misspelt ones in five categories, thresholds "
            "per category, every test split and suite"),
    Default("intent", "intent", 116, 22, ("--dataset", "banking77"),
            what="intent classifier: banking77's 77 customer-service intents"),
)


@dataclass(frozen=True)
class Stage:
    model: Default
    kind: str  # "train" or "export"

    @property
    def estimate(self) -> float:
        return self.model.train_s if self.kind == "train" else self.model.export_s

    def describe(self) -> str:
        if self.kind == "train":
            return f"train the {self.model.what}"
        return (f"export {self.model.name} to ONNX (parity gate, int8 check on the validation "
                "split) and save it in the store")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def plan(runs: Path, defaults: tuple[Default, ...] = DEFAULTS) -> list[Stage]:
    """The stages still to do: none for a model already in the store, no training for a run
    that finished (its model/manifest.json exists)."""
    stages = []
    for model in defaults:
        if _stored(model.name):
            continue
        if not (runs / model.name / "model" / "manifest.json").exists():
            stages.append(Stage(model, "train"))
        stages.append(Stage(model, "export"))
    return stages


def _stored(name: str) -> bool:
    try:
        store.get(name)
    except store.ArtifactError:
        return False
    return True


def _say(line: str) -> None:
    print(line, flush=True)  # at once, also when stdout is a pipe (make, CI logs)


def build_defaults(runs: Path, data_dir: Path | None = None,
                   cli: Callable[[list[str]], int] | None = None,
                   say: Callable[[str], None] = _say,
                   defaults: tuple[Default, ...] = DEFAULTS) -> int:
    """Run every stage still to do; the first that fails stops the build with its exit code."""
    if cli is None:
        from training.cli import main

        cli = main
    for model in defaults:
        if _stored(model.name):
            say(f"{model.name} model: in the store at {store.store_location()}")
    stages = plan(runs, defaults)
    if not stages:
        return 0
    data = ["--data-dir", str(data_dir)] if data_dir else []
    say(f"building {len(stages)} stages, about {_duration(sum(s.estimate for s in stages))} "
        "on 2 CPU cores (measured); later starts skip all of this")
    started = time.perf_counter()
    spent = estimated = 0.0
    for number, stage in enumerate(stages, 1):
        pace = spent / estimated if estimated else 1.0
        left = pace * sum(s.estimate for s in stages[number - 1:])
        elapsed = time.perf_counter() - started
        say(f"\n[stage {number} of {len(stages)}] {stage.describe()} (about "
            f"{_duration(pace * stage.estimate)}; elapsed {_duration(elapsed)}, about "
            f"{_duration(left)} left in all)")
        began = time.perf_counter()
        run_dir = runs / stage.model.name
        if stage.kind == "train":
            resume = ["--resume"] if (run_dir / "checkpoints" / "trainer_state.pt").exists() else []
            code = cli(["train", stage.model.task, "--preset", "default", "--output",
                        str(run_dir), *stage.model.train_flags, *resume, *data])
        else:
            code = cli(["export", "--checkpoint", str(run_dir / "model"), "--name",
                        stage.model.name, *data])
        if code != 0:
            say(f"stage {number} of {len(stages)} failed (exit {code}); run `make serve` again "
                "to go on from here")
            return code
        spent += time.perf_counter() - began
        estimated += stage.estimate
    say(f"\nall {len(stages)} stages done in {_duration(time.perf_counter() - started)}")
    return 0
