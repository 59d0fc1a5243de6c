"""A model at serving time: the engine, the middle step of the request path.

- The fronts (service/fronts.py) prepare and post-process, one class per task.
- `Engine`: core, the onnxruntime session. Items are sorted by length and run in micro-batches
  under a token budget, so an item's score does not depend on what it was batched with. The
  graph and provider are chosen once, at load, and checked: a CUDA session that silently fell
  back to the CPU is recorded as a problem and the service never reports ready. An int8
  session on a CPU runs in lanes: calls side by side, each on its share of the cores
  (`lanes_for`); a call made while no other is in flight runs on every core (`Calls`).
- `RewardRuntime`: a reward model's front and engine together, for benchmarks and tests.

The service (service/service.py) gives each model a front and an engine, with the batch queue
(service/batching.py) between them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models import store
from models.artifact import GRAPH_FILES, Quantisation
from models.inputs import EncodedPair, Prompt
from models.manifest import Manifest, Task
from models.session import OnBatch, open_session, run
from service.fronts import Front, RewardFront, RewardScore
from service.settings import Graph, Provider, Settings

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
# Padded tokens per engine call unless ALIGNSERVE_MAX_BATCH_TOKENS says. A GPU wants large
# batches. On a CPU it depends on the threads of one call: with several, small batches of like
# lengths pad less and ran MiniLM 1.2-1.6x faster than 4,096-token ones on 2 cores
# (bench/batch_tokens.py); with one (a lane's share of 2 cores), an item alone is the fastest
# call (bench/engine_lanes.py), and 64 tokens leaves only items of up to 32 tokens to share one,
# so an item's int8 score does not move with its batch.
BATCH_TOKENS = {"cuda": 8192, "cpu": 512, "cpu, one thread": 64}
# int8 calls run side by side on a CPU unless ALIGNSERVE_LANES says: two single-threaded
# int8 calls outpaced one call on both of 2 cores by 1.1-1.3x (bench/engine_lanes.py), because
# int8's short matrix products cannot keep two threads busy inside one call. fp32 keeps both
# busy: there lanes changed throughput by -2 to +11% and doubled a lone item's latency, so fp32
# runs one lane, as does CUDA (one stream).
INT8_CPU_LANES = 2


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """A container's CPU limit in cores from its cgroup quota (v2's cpu.max, else v1's
    cpu.cfs_quota_us over cpu.cfs_period_us); None when there is none or it cannot be read."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = (root / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    with contextlib.suppress(OSError, ValueError):
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    return None


def usable_cores(root: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: its CPU affinity, capped by a container's CPU limit,
    which os.cpu_count() ignores (a pod limited to 2 CPUs on a 64-core node has 2)."""
    cores = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit(root)
    return cores if limit is None else min(cores, max(1, math.ceil(limit)))


@dataclass(frozen=True)
class Lanes:
    """How an engine runs: `count` batches side by side, each call on `threads` intra-op
    threads (None: onnxruntime's default) and within `batch_tokens` padded tokens; a call made
    while no other is in flight on `lone_threads` (None: on its lane's)."""
    count: int
    threads: int | None
    batch_tokens: int
    lone_threads: int | None = None

    def __str__(self) -> str:
        lone = f", a lone call on {self.lone_threads}" if self.lone_threads else ""
        return (f"{self.count} lane(s) x {self.threads or 'default'} thread(s), "
                f"{self.batch_tokens}-token calls{lone}")


def lanes_for(settings: Settings, graph: Quantisation, cuda: bool, cores: int) -> Lanes:
    """The settings', else: an int8 graph on a CPU up to INT8_CPU_LANES lanes sharing the
    cores evenly, and a call alone on all of them; any other graph on a CPU one lane on every
    core; on CUDA one lane and onnxruntime's own thread default."""
    side_by_side = not cuda and graph is Quantisation.int8
    count = settings.lanes or (max(1, min(INT8_CPU_LANES, cores)) if side_by_side else 1)
    threads = settings.threads or (None if cuda else max(1, cores // count))
    budget = BATCH_TOKENS["cuda" if cuda else "cpu, one thread" if threads == 1 else "cpu"]
    lone = settings.lone_call_threads
    if lone is None:  # the default: every core, where the lanes divide them
        lone = cores if not cuda and threads is not None and threads < cores else 0
    lone_threads = lone if count > 1 and lone not in (0, threads) else None
    return Lanes(count, threads, settings.max_batch_tokens or budget, lone_threads)


def choose(directory: Path, settings: Settings, available: Sequence[str]
           ) -> tuple[Quantisation, list[str]]:
    """(graph, providers) for these settings on a host offering `available` providers."""
    cuda = settings.provider is Provider.cuda or (settings.provider is Provider.auto
                                                  and CUDA in available)
    if settings.provider is Provider.cuda and CUDA not in available:
        raise RuntimeError("ALIGNSERVE_PROVIDER=cuda but onnxruntime offers no CUDA provider "
                           f"(it has {list(available)}): install alignserve[gpu] on a GPU host")
    if settings.graph is Graph.auto:
        preferred = Quantisation.fp16 if cuda else Quantisation.int8
        graph = preferred if (directory / GRAPH_FILES[preferred]).exists() else Quantisation.fp32
    else:
        graph = Quantisation(settings.graph.value)
    if not (directory / GRAPH_FILES[graph]).exists():
        raise RuntimeError(f"ALIGNSERVE_GRAPH={graph.value}: the artifact has no "
                           f"{GRAPH_FILES[graph]} (int8 is left out when it failed its gate)")
    return graph, [CUDA, CPU] if cuda else [CPU]


class Calls:
    """Which session each engine call runs on. Lanes run their calls side by side on `lane`,
    each on its share of the cores; a call made while no other is in flight runs on `lone`, a
    second session over the same graph on every core: an item alone took about 9 ms there
    against 15 on one of two cores (int8, ~106 tokens, 2-core AMD EPYC), with the same scores
    to the bit (the threads split the matrix products, not their sums). A call that starts
    while a lone one runs waits for it (one engine call: on a one-thread lane, one item) rather
    than crowding three threads onto two cores; from then on both are in flight and run on the
    lanes. The lone session's threads do not spin waiting for work: spinning, they held a core
    after every lone call, and single pairs from 16 clients lost 13% (docs/measurements.md, the
    service). Two sessions cost about 25 MB more per model than one (onnxruntime prepacks each
    session's weights)."""

    def __init__(self, lane: onnxruntime.InferenceSession,
                 lone: onnxruntime.InferenceSession | None) -> None:
        self.lane, self.lone = lane, lone
        self.in_flight = 0
        self.lone_running = False
        self.changed = threading.Condition()

    @contextmanager
    def call(self) -> Iterator[Call]:
        """One call in flight while in the context; its engine calls take sessions from it."""
        with self.changed:
            self.in_flight += 1
        try:
            yield Call(self)
        finally:
            with self.changed:
                self.in_flight -= 1


@dataclass
class Lone:
    """The part of a call whose engine calls ran alone on every core: items and seconds."""
    items: int = 0
    seconds: float = 0.0


class Call:
    """One call's sessions, one engine call at a time (models.session.run's SessionFor)."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.alone = False  # whether its latest engine call ran on the lone session
        self.lone = Lone()  # what of it ran there

    def observe(self, count: int, seconds: float) -> None:
        """Its latest engine call ran `count` items in `seconds`."""
        if self.alone:
            self.lone.items += count
            self.lone.seconds += seconds

    @contextmanager
    def __call__(self) -> Iterator[onnxruntime.InferenceSession]:
        calls = self.calls
        if calls.lone is None:
            yield calls.lane
            return
        with calls.changed:
            calls.changed.wait_for(lambda: not calls.lone_running)
            self.alone = calls.lone_running = calls.in_flight == 1
        if not self.alone:
            yield calls.lane
            return
        try:
            yield calls.lone
        finally:
            with calls.changed:
                calls.lone_running = False
                calls.changed.notify_all()


class Engine:
    """An onnxruntime session over the artifact's chosen graph (two, with lone calls)."""

    def __init__(self, directory: Path, settings: Settings, pad_id: int) -> None:
        import onnxruntime

        self.settings, self.pad_id = settings, pad_id
        self.graph, providers = choose(directory, settings,
                                       onnxruntime.get_available_providers())
        self.lanes = lanes_for(settings, self.graph, CUDA in providers, usable_cores())
        path = directory / GRAPH_FILES[self.graph]
        self.session = open_session(path, providers, self.lanes.threads, settings.cpu_arena)
        self.calls = Calls(self.session, open_session(
            path, providers, self.lanes.lone_threads, settings.cpu_arena, spin=False
        ) if self.lanes.lone_threads else None)
        self.provider = "cuda" if self.session.get_providers()[0] == CUDA else "cpu"
        self.problem: str | None = None
        if CUDA in providers and self.provider != "cuda":
            self.problem = ("CUDA was asked for but onnxruntime fell back to the CPU: refusing "
                            "to report ready rather than serve at a fraction of the speed")
            log.error(self.problem)

    def core(self, items: Sequence[EncodedPair], on_batch: OnBatch | None = None) -> np.ndarray:
        """Raw outputs, shape (len(items), outputs)."""
        return self.call(items, on_batch)[0]

    def call(self, items: Sequence[EncodedPair], on_batch: OnBatch | None = None
             ) -> tuple[np.ndarray, Lone]:
        """`core`'s outputs, and the part of them whose engine calls ran alone on every core
        (the batch queue learns a lane's pace from the rest). Under load most engine calls run
        on the lanes, but one whose lane is briefly alone (the other between batches) runs on
        every core: a call of many items is seldom wholly one or the other."""
        with self.calls.call() as call:
            def observe(count: int, tokens: int, seconds: float) -> None:
                call.observe(count, seconds)
                if on_batch is not None:
                    on_batch(count, tokens, seconds)

            outputs = run(call, items, self.lanes.batch_tokens, self.pad_id, observe)
        return outputs, call.lone

    def warm_up(self, front: Front) -> None:
        """Run the largest shape the service will see through every session, so the first
        request pays nothing, whichever it takes."""
        length = front.manifest.input.max_length
        count = max(1, min(self.settings.max_batch_size,
                           self.lanes.batch_tokens // length))
        items = front.warm_up_items(count)
        for session in (self.calls.lane, self.calls.lone):
            if session is not None:
                run(session, items, self.lanes.batch_tokens, self.pad_id)


class RewardRuntime:
    """Front and engine of a reward model in one process."""

    def __init__(self, directory: Path, manifest: Manifest, settings: Settings) -> None:
        if manifest.task is not Task.reward:
            raise RuntimeError(f"{manifest.name} is a {manifest.task.value} model, not a reward "
                               "model")
        self.front = RewardFront(directory, manifest)
        self.engine = Engine(directory, settings, self.front.encoder.pad_id)

    @classmethod
    def from_store(cls, tag: str, settings: Settings) -> RewardRuntime:
        stored = store.get(tag)  # verifies every file's sha256
        return cls(stored.path, stored.manifest, settings)

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[RewardScore]:
        items = self.front.prepare(prompts, responses)
        return self.front.post(items, self.engine.core(items))
