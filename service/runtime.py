"""A model at serving time: the engine, the middle step of the request path.

- The fronts (service/fronts.py) prepare and post-process, one class per task.
- `Engine`: core, the onnxruntime session. Items are sorted by length and run in micro-batches
  under a token budget, so an item's score does not depend on what it was batched with. The
  graph and provider are chosen once, at load, and checked: a CUDA session that silently fell
  back to the CPU is recorded as a problem and the service never reports ready. An int8
  session on a CPU runs in lanes: calls side by side, each on its share of the cores
  (`lanes_for`).
- `RewardRuntime`: a reward model's front and engine together, for benchmarks and tests.

The service (service/service.py) gives each model a front and an engine, with the batch queue
(service/batching.py) between them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import store
from models.artifact import GRAPH_FILES, Quantisation
from models.inputs import EncodedPair, Prompt
from models.manifest import Manifest, Task
from models.session import OnBatch, open_session, run
from service.fronts import Front, RewardFront, RewardScore
from service.settings import Graph, Provider, Settings

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
    threads (None: onnxruntime's default) and within `batch_tokens` padded tokens."""
    count: int
    threads: int | None
    batch_tokens: int

    def __str__(self) -> str:
        return (f"{self.count} lane(s) x {self.threads or 'default'} thread(s), "
                f"{self.batch_tokens}-token calls")


def lanes_for(settings: Settings, graph: Quantisation, cuda: bool, cores: int) -> Lanes:
    """The settings', else: an int8 graph on a CPU up to INT8_CPU_LANES lanes sharing the
    cores evenly; any other graph on a CPU one lane on every core; on CUDA one lane and
    onnxruntime's own thread default."""
    side_by_side = not cuda and graph is Quantisation.int8
    count = settings.lanes or (max(1, min(INT8_CPU_LANES, cores)) if side_by_side else 1)
    threads = settings.threads or (None if cuda else max(1, cores // count))
    budget = BATCH_TOKENS["cuda" if cuda else "cpu, one thread" if threads == 1 else "cpu"]
    return Lanes(count, threads, settings.max_batch_tokens or budget)


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


class Engine:
    """One onnxruntime session over the artifact's chosen graph."""

    def __init__(self, directory: Path, settings: Settings, pad_id: int) -> None:
        import onnxruntime

        self.settings, self.pad_id = settings, pad_id
        self.graph, providers = choose(directory, settings,
                                       onnxruntime.get_available_providers())
        self.lanes = lanes_for(settings, self.graph, CUDA in providers, usable_cores())
        self.session = open_session(directory / GRAPH_FILES[self.graph], providers,
                                    self.lanes.threads, settings.cpu_arena)
        self.provider = "cuda" if self.session.get_providers()[0] == CUDA else "cpu"
        self.problem: str | None = None
        if CUDA in providers and self.provider != "cuda":
            self.problem = ("CUDA was asked for but onnxruntime fell back to the CPU: refusing "
                            "to report ready rather than serve at a fraction of the speed")
            log.error(self.problem)

    def core(self, items: Sequence[EncodedPair], on_batch: OnBatch | None = None) -> np.ndarray:
        """Raw outputs, shape (len(items), outputs)."""
        return run(self.session, items, self.lanes.batch_tokens, self.pad_id, on_batch)

    def warm_up(self, front: Front) -> None:
        """Run the largest shape the service will see, so the first request pays nothing."""
        length = front.manifest.input.max_length
        count = max(1, min(self.settings.max_batch_size,
                           self.lanes.batch_tokens // length))
        self.core(front.warm_up_items(count))


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
