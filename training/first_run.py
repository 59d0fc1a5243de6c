"""`alignserve models build-defaults`: the default models the store lacks, built from the data,
with the overall progress. `make serve` runs it before serving.

Each default model is two stages: train (`alignserve train TASK --preset default`, resumed
from its checkpoint when a run was interrupted; skipped when a finished run is in runs/NAME) and
export (ONNX, the parity gate and the int8 check, then the store). On two cores or more, two
stages run at once, each a process on its share of the cores (forked from the build, which
imports the training code once, not once a stage): a training step gains only 1.7 times from a
second core (dropout's random masks nothing; `python -m bench.train_threads`), so two one-core lanes
finish the build sooner than one two-core lane (docs/measurements.md, "First run"). A free
lane takes the longest stage that is ready, so the trainings go first and the short exports
fill the end; a stage with nothing beside it takes every core. The fp32 figures
do not depend on it (one core or two, a training's reports agree to the fourth decimal); an
int8 decision at the edge of its gate can (docs/measurements.md).

Every stage announces itself as "stage N of M" with what it does and the time the whole build
has left, estimated from the stage times measured on a 2-core CPU (DEFAULTS) and scaled by how
fast this machine ran the stages so far; the running stages' progress is shown every minute.
A stage's whole output goes to runs/NAME/STAGE.log, and is shown when the stage ends, its
progress bars in their final state.
"""

from __future__ import annotations

import importlib
import multiprocessing
import multiprocessing.process
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from models import store
from training.data.catalogue import default_data_dir


@dataclass(frozen=True)
class Default:
    name: str  # the store name, which the service's settings point at
    task: str
    train_s: float  # one run measured on the project's 2-core CPU
    export_s: float
    train_flags: tuple[str, ...] = ()
    what: str = ""


# Stage times of the first `make serve` on a fresh clone, one stage at a time on both cores of
# the slowest 2-core CPU measured, an AMD EPYC with AVX2 alone (2026-12-07 at 166b07d, 23 min
# 42 s to ready; docs/measurements.md, "First run and test suite"). Faster CPUs are rescaled
# to as each stage ends.
DEFAULTS = (
    Default("reward", "reward", 579, 53, what="reward model: ~2,400 pooled preference and "
            "contrast pairs, then calibration and every test split"),
    Default("moderation", "moderation", 542, 45, what="moderation classifier: 16,000 labelled "
            "texts (about 570 clean ones with a word of violence swapped in), 800 "
            "counter-speech and 1,600 misspelt ones in five categories, thresholds per "
            "category, every test split and suite"),
    Default("intent", "intent", 143, 20, ("--dataset", "banking77"),
            what="intent classifier: banking77's 77 customer-service intents"),
)


LANES = 2  # stages at once, on a machine with at least as many cores
# How much longer a stage takes on one core beside another stage than alone on two: the reward
# and moderation trainings took 1.66 and 1.64 times as long (their report.json's total_s,
# fresh-clone first runs at 166b07d and 4702e92, AMD EPYC with AVX2 alone, 2026-12-07).
SHARED = 1.65
HEARTBEAT_S = 60.0  # how often the running stages' progress is shown
FAILED_TAIL = 40  # lines of a failed stage's output shown


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

    def log(self, runs: Path) -> Path:
        return runs / self.model.name / f"{self.kind}.log"

    def argv(self, runs: Path, threads: int, data: list[str]) -> list[str]:
        run_dir = runs / self.model.name
        if self.kind == "export":
            return ["export", "--checkpoint", str(run_dir / "model"), "--name",
                    self.model.name, "--threads", str(threads), *data]
        resume = ["--resume"] if (run_dir / "checkpoints" / "trainer_state.pt").exists() else []
        return ["train", self.model.task, "--preset", "default", "--output", str(run_dir),
                *self.model.train_flags, "--threads", str(threads), *resume, *data]


class Job(Protocol):
    """A running stage, as the build sees it."""

    def poll(self) -> int | None: ...

    def terminate(self) -> None: ...

    def wait(self) -> int: ...


Launch = Callable[[list[str], Path, int], Job]


# What the stages run, imported once by the build and inherited by every stage it forks: about
# 17 s of imports on a 2-core AMD EPYC (torch, transformers), which a fresh process per stage
# would pay six times.
STAGE_MODULES = ("training.commands", "training.export", "training.intent",
                 "training.moderation", "training.reward")


@dataclass
class _Forked:
    process: multiprocessing.process.BaseProcess

    def poll(self) -> int | None:
        return None if self.process.is_alive() else self.process.exitcode

    def terminate(self) -> None:
        self.process.terminate()  # SIGTERM: a training saves its checkpoint and stops

    def wait(self) -> int:
        self.process.join()
        return self.process.exitcode or 0


def launch(argv: list[str], log: Path, threads: int) -> Job:
    """`alignserve ARGV` in a process of its own on `threads` cores, its output into `log`:
    forked from this one once it has imported STAGE_MODULES."""
    for module in STAGE_MODULES:
        importlib.import_module(module)
    log.parent.mkdir(parents=True, exist_ok=True)
    process = multiprocessing.get_context("fork").Process(target=_run_stage,
                                                          args=(argv, log, threads))
    process.start()
    return _Forked(process)


def _run_stage(argv: list[str], log: Path, threads: int) -> None:
    """A forked stage: its output into its log, its share of the cores, then the command."""
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)
    # Python's streams anew on those descriptors, line by line (the build's own may have been
    # replaced, as pytest does).
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    os.environ.update(RAYON_NUM_THREADS=str(threads),  # the tokenizers' pool
                      TQDM_MININTERVAL="1")  # progress bars a file can hold
    from training.cli import main

    try:
        code = main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    raise SystemExit(code)


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


def _read(log: Path, last: int | None = None) -> str:
    """A stage's output so far, or its `last` bytes, its carriage returns kept (text mode reads
    them as newlines)."""
    if not log.exists():
        return ""
    with log.open("rb") as out:
        if last is not None:
            out.seek(max(0, out.seek(0, os.SEEK_END) - last))
        return out.read().decode(errors="replace")


def finished_lines(text: str) -> list[str]:
    """A stage's output as a terminal would leave it: each progress bar in its last state, a
    bar that cleared itself gone."""
    shown = []
    for line in text.split("\n"):
        drawn = [part for part in line.split("\r") if part]  # a bare "\r" only moves back
        if drawn and drawn[-1].strip():  # spaces over a bar clear it
            shown.append(drawn[-1].rstrip())
    return shown


_BAR = re.compile(r"([^\r\n|]*?):\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")
BAR_TAIL = 4096  # the end of a stage's output that holds its latest progress bar


def progress(text: str) -> str:
    """The latest progress bar in a stage's output, as "train 120/300"; "" before any."""
    bars = _BAR.findall(text[-BAR_TAIL:])
    if not bars:
        return ""
    what, done, total = bars[-1]
    return f"{what.strip()} {done}/{total}"


def next_stage(waiting: list[Stage], busy: set[str]) -> Stage | None:
    """The stage to start on a free lane: the longest of those ready (no earlier stage of the
    same model waiting or running), so the trainings start first and the short exports fill
    the end, where a lane would otherwise idle."""
    ready = [s for i, s in enumerate(waiting) if s.model.name not in busy
             and all(w.model.name != s.model.name for w in waiting[:i])]
    return max(ready, key=lambda s: s.estimate, default=None)


def makespan(running: list[tuple[Stage, float]], waiting: list[Stage], lanes: int,
             shared: float = SHARED) -> float:
    """Seconds until every stage is done, in estimated seconds alone on every core: the running
    ones with the work they have left, the waiting ones started as `next_stage` picks them;
    each goes `shared` times slower while another runs beside it."""
    active = {stage: work for stage, work in running if work > 0}  # overdue: ending now
    busy = {stage.model.name for stage in active}
    waiting, elapsed = list(waiting), 0.0
    while active or waiting:
        while len(active) < lanes and (stage := next_stage(waiting, busy)) is not None:
            waiting.remove(stage)
            active[stage] = stage.estimate
            busy.add(stage.model.name)
        step = min(active.values())
        elapsed += step * (shared if len(active) > 1 else 1.0)
        for stage, work in list(active.items()):
            active[stage] = work - step
            if work - step <= 1e-9:
                del active[stage]
                busy.discard(stage.model.name)
    return elapsed


@dataclass
class _Running:
    stage: Stage
    number: int
    job: Job
    threads: int
    began: float


class _Build:
    """The build's state: which stages run, which wait, and how fast this machine goes."""

    def __init__(self, runs: Path, stages: list[Stage], cores: int, launch: Launch,
                 say: Callable[[str], None], data: list[str]) -> None:
        self.runs, self.cores, self.launch, self.say, self.data = runs, cores, launch, say, data
        self.waiting, self.total = list(stages), len(stages)
        self.lanes = max(1, min(LANES, cores, len({s.model.name for s in stages})))
        self.running: list[_Running] = []
        self.started = time.perf_counter()
        self.spent = self.expected = 0.0  # finished stages: measured, and estimated

    @property
    def pace(self) -> float:
        return self.spent / self.expected if self.expected else 1.0

    def _factor(self, threads: int) -> float:
        return SHARED if threads < self.cores else 1.0

    def left(self) -> float:
        """The time the build has left, at this machine's pace."""
        now = time.perf_counter()
        running = [(r.stage, r.stage.estimate
                    - (now - r.began) / self._factor(r.threads) / self.pace)
                   for r in self.running]
        return self.pace * makespan(running, self.waiting, self.lanes)

    def fill(self) -> None:
        """Start stages on the free lanes."""
        busy = {r.stage.model.name for r in self.running}
        while len(self.running) < self.lanes and (
                stage := next_stage(self.waiting, busy)) is not None:
            self.waiting.remove(stage)
            busy.add(stage.model.name)
            # all the cores, unless another stage runs or could start beside this one
            beside = self.running or next_stage(self.waiting, busy) is not None
            threads = max(1, self.cores // self.lanes) if beside else self.cores
            self._start(stage, self.total - len(self.waiting), threads)

    def _start(self, stage: Stage, number: int, threads: int) -> None:
        log = stage.log(self.runs)
        job = self.launch(stage.argv(self.runs, threads, self.data), log, threads)
        self.running.append(_Running(stage, number, job, threads, time.perf_counter()))
        self.say(f"\n[stage {number} of {self.total}] {stage.describe()} (on "
                 f"{threads} of {self.cores} cores; about "
                 f"{_duration(self.pace * self._factor(threads) * stage.estimate)}; elapsed "
                 f"{_duration(time.perf_counter() - self.started)}, about "
                 f"{_duration(self.left())} left in all; its output: {log})")

    def finish(self, done: _Running, code: int) -> bool:
        """Show a stage's output; False when it failed."""
        lines = finished_lines(_read(done.stage.log(self.runs)))
        self.running.remove(done)
        took = time.perf_counter() - done.began
        if code != 0:
            for line in lines[-FAILED_TAIL:]:
                self.say(line)
            self.say(f"stage {done.number} of {self.total} failed (exit {code}); its whole "
                     f"output: {done.stage.log(self.runs)}; run `make serve` again to go on "
                     "from here")
            return False
        for line in lines:
            self.say(line)
        self.say(f"[stage {done.number} of {self.total} done in {_duration(took)}: "
                 f"{done.stage.kind} {done.stage.model.name}]")
        self.spent += took
        self.expected += self._factor(done.threads) * done.stage.estimate
        return True

    def heartbeat(self) -> None:
        states = [f"{r.stage.model.name}: "
                  f"{progress(_read(r.stage.log(self.runs), BAR_TAIL)) or r.stage.kind}"
                  for r in self.running]
        self.say(f"  elapsed {_duration(time.perf_counter() - self.started)}, about "
                 f"{_duration(self.left())} left in all; {'; '.join(states)}")

    def stop(self) -> None:
        """Stop the running stages (a training saves its checkpoint first) and wait for them."""
        for r in self.running:
            r.job.terminate()
        for r in self.running:
            r.job.wait()
        self.running.clear()


def build_defaults(runs: Path, data_dir: Path | None = None, launch: Launch = launch,
                   say: Callable[[str], None] = _say, defaults: tuple[Default, ...] = DEFAULTS,
                   cores: int | None = None, heartbeat_s: float = HEARTBEAT_S,
                   poll_s: float = 0.5) -> int:
    """Run every stage still to do, two at once where the cores allow; the first that fails
    stops the build (a training stopped beside it saves its checkpoint) with its exit code."""
    for model in defaults:
        if _stored(model.name):
            say(f"{model.name} model: in the store at {store.store_location()}")
    stages = plan(runs, defaults)
    if not stages:
        return 0
    data = data_dir or default_data_dir()
    if any(stage.kind == "train" for stage in stages) and not data.is_dir():
        say(f"no data directory at {data}: the default models are trained from the data sets "
            "in ../shared/data beside this repository (or wherever ALIGNSERVE_DATA_DIR or "
            "--data-dir points); nothing was built")
        return 2
    cores = cores or len(os.sched_getaffinity(0))
    build = _Build(runs, stages, cores, launch, say,
                   ["--data-dir", str(data_dir)] if data_dir else [])
    at_once = (f"{build.lanes} at once, each on its share of the {cores} cores"
               if build.lanes > 1 else f"one at a time on {cores} CPU core(s)")
    say(f"building {len(stages)} stages, {at_once}: about {_duration(build.left())} in all "
        "(measured on 2 CPU cores); later starts skip all of this")
    beat = time.perf_counter()
    try:
        build.fill()
        while build.running:
            time.sleep(poll_s)
            for r in list(build.running):
                code = r.job.poll()
                if code is not None and not build.finish(r, code):
                    build.stop()
                    return code
            build.fill()
            if build.running and time.perf_counter() - beat >= heartbeat_s:
                build.heartbeat()
                beat = time.perf_counter()
    except KeyboardInterrupt:
        build.stop()
        say("interrupted: each training saved a checkpoint; run `make serve` again to go on "
            "from there")
        return 130
    say(f"\nall {len(stages)} stages done in {_duration(time.perf_counter() - build.started)}")
    return 0
