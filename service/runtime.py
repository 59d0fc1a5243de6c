"""A model at serving time, in the three steps of the request path.

- `Front`: prepare (tokenise, Rust `tokenizers`, batched) and post (normalise, calibrate, rank,
  threshold). It never imports onnxruntime.
- `Engine`: core, the onnxruntime session. Items are sorted by length and run in micro-batches
  under a token budget, so an item's score does not depend on what it was batched with. The
  graph and provider are chosen once, at load, and checked: a CUDA session that silently fell
  back to the CPU is recorded as a problem and the service never reports ready.
- `RewardRuntime`: a reward model's front and engine together, for benchmarks and tests.

The service (service/service.py) gives each model a front and an engine, with the batch queue
(service/batching.py) between them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import store
from models.calibration import sigmoid, softmax
from models.inputs import EncodedPair, PairEncoder, Prompt
from models.manifest import Manifest, Task
from models.runtime import OnBatch, open_session, run
from models.taxonomy import OUT_OF_SCOPE
from service.settings import Graph, Provider, Settings

log = logging.getLogger(__name__)

GRAPH_FILES = {Graph.fp32: "model.onnx", Graph.int8: "model.int8.onnx",
               Graph.fp16: "model.fp16.onnx"}
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def choose(directory: Path, settings: Settings, available: Sequence[str]
           ) -> tuple[Graph, list[str]]:
    """(graph, providers) for these settings on a host offering `available` providers."""
    cuda = settings.provider is Provider.cuda or (settings.provider is Provider.auto
                                                  and CUDA in available)
    if settings.provider is Provider.cuda and CUDA not in available:
        raise RuntimeError("ALIGNSERVE_PROVIDER=cuda but onnxruntime offers no CUDA provider "
                           f"(it has {list(available)}): install alignserve[gpu] on a GPU host")
    graph = settings.graph
    if graph is Graph.auto:
        preferred = Graph.fp16 if cuda else Graph.int8
        graph = preferred if (directory / GRAPH_FILES[preferred]).exists() else Graph.fp32
    if not (directory / GRAPH_FILES[graph]).exists():
        raise RuntimeError(f"ALIGNSERVE_GRAPH={graph.value}: the artifact has no "
                           f"{GRAPH_FILES[graph]} (int8 is left out when it lost accuracy)")
    return graph, [CUDA, CPU] if cuda else [CPU]


@dataclass(frozen=True)
class CategoryScore:
    probability: float
    threshold: float
    flagged: bool


@dataclass(frozen=True)
class Moderation:
    flagged: bool
    categories: dict[str, CategoryScore]
    tokens: int
    truncated: bool


@dataclass(frozen=True)
class Intent:
    label: str
    probability: float


@dataclass(frozen=True)
class Classification:
    top: list[Intent]
    out_of_scope: bool  # the best intent's probability fell below the threshold
    tokens: int
    truncated: bool


@dataclass(frozen=True)
class RewardScore:
    reward: float
    normalised: float
    tokens: int
    prompt_truncated: bool
    response_truncated: bool


class Front:
    """Tokenisation and post-processing for one model: the cheap ends of the request path."""

    def __init__(self, directory: Path, manifest: Manifest) -> None:
        self.manifest = manifest
        self.tag = f"{manifest.name}:{manifest.version}"
        self.encoder = PairEncoder.from_file(directory / "tokenizer.json", manifest.input)
        calibration = manifest.calibration
        self.temperature = calibration.temperature if calibration else None
        temperatures = (calibration.temperatures if calibration else None) or {}
        self.temperatures = np.array([temperatures.get(c, 1.0) for c in manifest.labels])
        self.thresholds = np.array([manifest.thresholds.get(c, 0.5) for c in manifest.labels])
        self.out_of_scope = manifest.thresholds.get(OUT_OF_SCOPE)
        norm = manifest.normalisation
        self.mean, self.std = (norm.mean, norm.std) if norm else (0.0, 1.0)

    def prepare(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[EncodedPair]:
        return self.encoder.encode_batch(prompts, responses)

    def prepare_texts(self, texts: Sequence[str]) -> list[EncodedPair]:
        return self.encoder.encode_texts(texts)

    def moderate(self, items: Sequence[EncodedPair], logits: np.ndarray) -> list[Moderation]:
        """Per-category calibrated probabilities sigmoid(z / T_c), flagged at each threshold."""
        probs = sigmoid(logits / self.temperatures)
        out = []
        for item, row in zip(items, probs, strict=True):
            scores = {c: CategoryScore(float(p), float(t), bool(p >= t)) for c, p, t in
                      zip(self.manifest.labels, row, self.thresholds, strict=True)}
            out.append(Moderation(any(s.flagged for s in scores.values()), scores, len(item),
                                  item.truncated))
        return out

    def classify(self, items: Sequence[EncodedPair], logits: np.ndarray, top_k: int
                 ) -> list[Classification]:
        """Top-k intents by calibrated softmax(z / T); out of scope below the threshold."""
        probs = softmax(logits / (self.temperature or 1.0))
        out = []
        for item, row in zip(items, probs, strict=True):
            order = np.argsort(-row, kind="stable")[:top_k]
            top = [Intent(self.manifest.labels[i], float(row[i])) for i in order]
            below = self.out_of_scope is not None and top[0].probability < self.out_of_scope
            out.append(Classification(top, below, len(item), item.truncated))
        return out

    def post(self, items: Sequence[EncodedPair], rewards: Sequence[float]) -> list[RewardScore]:
        return [RewardScore(float(r), float((r - self.mean) / self.std), len(item),
                            item.prompt_truncated, item.response_truncated)
                for item, r in zip(items, rewards, strict=True)]

    def preference(self, reward_a: float, reward_b: float) -> float:
        """Calibrated P(a preferred over b) = sigmoid((r_a - r_b) / T)."""
        return float(sigmoid((reward_a - reward_b) / (self.temperature or 1.0)))

    def rank_probabilities(self, rewards: Sequence[float]) -> np.ndarray:
        """Bradley-Terry over N candidates: P(candidate i is best) = softmax(r / T)."""
        return softmax(np.asarray(rewards, dtype=np.float64) / (self.temperature or 1.0))

    def warm_up_items(self, count: int) -> list[EncodedPair]:
        """`count` items at the model's full length: the largest shape the engine will see."""
        filler = "word " * self.manifest.input.max_length
        if self.manifest.task is Task.reward:
            return self.prepare([filler] * count, [filler] * count)
        return self.prepare_texts([filler] * count)


class Engine:
    """One onnxruntime session over the artifact's chosen graph."""

    def __init__(self, directory: Path, settings: Settings, pad_id: int) -> None:
        import onnxruntime

        self.settings, self.pad_id = settings, pad_id
        self.graph, providers = choose(directory, settings,
                                       onnxruntime.get_available_providers())
        self.session = open_session(directory / GRAPH_FILES[self.graph], providers,
                                    settings.threads)
        self.provider = "cuda" if self.session.get_providers()[0] == CUDA else "cpu"
        self.problem: str | None = None
        if CUDA in providers and self.provider != "cuda":
            self.problem = ("CUDA was asked for but onnxruntime fell back to the CPU: refusing "
                            "to report ready rather than serve at a fraction of the speed")
            log.error(self.problem)

    def core(self, items: Sequence[EncodedPair], on_batch: OnBatch | None = None) -> np.ndarray:
        """Raw outputs, shape (len(items), outputs)."""
        return run(self.session, items, self.settings.max_batch_tokens, self.pad_id, on_batch)

    def warm_up(self, front: Front) -> None:
        """Run the largest shape the service will see, so the first request pays nothing."""
        length = front.manifest.input.max_length
        count = max(1, min(self.settings.max_batch_size,
                           self.settings.max_batch_tokens // length))
        self.core(front.warm_up_items(count))


class RewardRuntime:
    """Front and engine of a reward model in one process."""

    def __init__(self, directory: Path, manifest: Manifest, settings: Settings) -> None:
        if manifest.task is not Task.reward:
            raise RuntimeError(f"{manifest.name} is a {manifest.task.value} model, not a reward "
                               "model")
        self.front = Front(directory, manifest)
        self.engine = Engine(directory, settings, self.front.encoder.pad_id)

    @classmethod
    def from_store(cls, tag: str, settings: Settings) -> RewardRuntime:
        stored = store.get(tag)  # verifies every file's sha256
        return cls(stored.path, stored.manifest, settings)

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[RewardScore]:
        items = self.front.prepare(prompts, responses)
        return self.front.post(items, self.engine.core(items)[:, 0].tolist())
