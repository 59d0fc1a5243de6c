"""The cheap ends of a served model's request path: prepare (tokenise, Rust `tokenizers`,
batched) and post-process (normalise, calibrate, rank, threshold), one class per task.

A front never imports onnxruntime; the engine (service/runtime.py) runs what a front prepares.
`front_for` picks the front for an artifact's task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.artifact import TOKENIZER_FILE
from models.calibration import conservative_reward, reward_of, sigmoid, softmax
from models.inputs import EncodedPair, PairEncoder, Prompt, Windows
from models.manifest import Manifest, Task
from models.taxonomy import OUT_OF_SCOPE


@dataclass(frozen=True)
class MemberSpread:
    """An ensemble's members on one item: their rewards, spread and conservative reward."""

    members: tuple[float, ...]
    std: float
    conservative: float
    normalised_conservative: float


@dataclass(frozen=True)
class RewardScore:
    reward: float  # an ensemble's: the members' mean
    normalised: float
    tokens: int
    prompt_truncated: bool
    response_truncated: bool
    spread: MemberSpread | None = None  # an ensemble's members


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
    windows: int


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


class Front:
    """What every task shares: the manifest, the tokenizer and the warm-up inputs."""

    def __init__(self, directory: Path, manifest: Manifest) -> None:
        self.manifest = manifest
        self.tag = f"{manifest.name}:{manifest.version}"
        self.encoder = PairEncoder.from_file(directory / TOKENIZER_FILE, manifest.input)
        self.temperature = manifest.temperature

    def prepare_texts(self, texts: Sequence[str]) -> list[EncodedPair]:
        return self.encoder.encode_texts(texts)

    def warm_up_items(self, count: int) -> list[EncodedPair]:
        """`count` items at the model's full length: the largest shape the engine will see."""
        return self.prepare_texts(["word " * self.manifest.input.max_length] * count)


class RewardFront(Front):
    def __init__(self, directory: Path, manifest: Manifest) -> None:
        super().__init__(directory, manifest)
        norm = manifest.normalisation
        self.mean, self.std = (norm.mean, norm.std) if norm else (0.0, 1.0)
        self.ensemble = manifest.ensemble
        self.penalty = manifest.ensemble.penalty if manifest.ensemble else 0.0

    def prepare(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[EncodedPair]:
        return self.encoder.encode_batch(prompts, responses)

    def warm_up_items(self, count: int) -> list[EncodedPair]:
        filler = "word " * self.manifest.input.max_length
        return self.prepare([filler] * count, [filler] * count)

    def post(self, items: Sequence[EncodedPair], outputs: np.ndarray) -> list[RewardScore]:
        """Scores from the graph's outputs (items x members; one member for a single model)."""
        rewards = reward_of(outputs)
        spreads: list[MemberSpread | None] = [None] * len(items)
        if self.ensemble is not None:
            std, low = conservative_reward(outputs, self.ensemble.rule, self.penalty)
            spreads = [MemberSpread(tuple(map(float, row)), float(s), float(c),
                                    float((c - self.mean) / self.std))
                       for row, s, c in zip(outputs, std, low, strict=True)]
        return [RewardScore(float(r), float((r - self.mean) / self.std), len(item),
                            item.prompt_truncated, item.response_truncated, spread)
                for item, r, spread in zip(items, rewards, spreads, strict=True)]

    def preference(self, reward_a: float, reward_b: float) -> float:
        """Calibrated P(a preferred over b) = sigmoid((r_a - r_b) / T)."""
        return float(sigmoid((reward_a - reward_b) / (self.temperature or 1.0)))

    def rank_probabilities(self, rewards: Sequence[float]) -> np.ndarray:
        """Bradley-Terry over N candidates: P(candidate i is best) = softmax(r / T)."""
        return softmax(np.asarray(rewards, dtype=np.float64) / (self.temperature or 1.0))


class ModerationFront(Front):
    def __init__(self, directory: Path, manifest: Manifest) -> None:
        super().__init__(directory, manifest)
        temperatures = (manifest.calibration.temperatures if manifest.calibration else None) or {}
        self.temperatures = np.array([temperatures.get(c, 1.0) for c in manifest.labels])
        self.thresholds = np.array([manifest.thresholds.get(c, 0.5) for c in manifest.labels])
        self.threshold_goal = manifest.threshold_goal

    def serve_at(self, min_precision: float | Mapping[str, float] | None) -> None:
        """Make an operating point the served default (ALIGNSERVE_MODERATION_MIN_PRECISION)."""
        if min_precision is not None:
            self.thresholds = self.thresholds_for(min_precision)
            self.threshold_goal = (f"the lowest threshold with validation precision >= "
                                   f"{min_precision} (ALIGNSERVE_MODERATION_MIN_PRECISION); "
                                   f"other categories: {self.manifest.threshold_goal}")

    def thresholds_for(self, min_precision: float | Mapping[str, float] | None) -> np.ndarray:
        """Per category, the threshold of an operating point: the lowest whose validation
        precision reaches `min_precision` (one value for every category, or some categories'
        own; the others keep their trained threshold). Raises ValueError when the model keeps
        no curves, a category is unknown, or no threshold reaches the precision."""
        if min_precision is None:
            return self.thresholds
        wanted = (dict.fromkeys(self.manifest.labels, min_precision)
                  if isinstance(min_precision, float | int) else dict(min_precision))
        unknown = sorted(set(wanted) - set(self.manifest.labels))
        if unknown:
            raise ValueError(f"min_precision names unknown categories {unknown}; this model's "
                             f"are {self.manifest.labels}")
        curves = self.manifest.operating_curves
        if not curves:
            raise ValueError(f"{self.tag} keeps no precision-recall curves (trained before "
                             "they were recorded): re-train it to choose operating points")
        out = self.thresholds.copy()
        for k, category in enumerate(self.manifest.labels):
            if category not in wanted:
                continue
            curve = curves[category]
            threshold = curve.threshold_for(wanted[category])
            if threshold is None:
                raise ValueError(f"{category} reaches at most precision "
                                 f"{max(curve.precision):.3f} on validation, below "
                                 f"{wanted[category]}")
            out[k] = threshold
        return out

    def prepare_windows(self, texts: Sequence[str]) -> Windows:
        return self.encoder.encode_windows(texts)

    def moderate(self, windows: Windows, logits: np.ndarray,
                 thresholds: np.ndarray | None = None) -> list[Moderation]:
        """Per text and category, the calibrated probability sigmoid(z / T_c) of its most
        offending window (a text is as abusive as its worst part: one threat in a long message
        is a threat), flagged at each category's threshold."""
        probs = sigmoid(logits / self.temperatures)
        thresholds = self.thresholds if thresholds is None else thresholds
        owners = np.asarray(windows.owners)
        out = []
        for text, tokens in enumerate(windows.tokens):
            mine = owners == text
            row = probs[mine].max(axis=0)
            scores = {c: CategoryScore(float(p), float(t), bool(p >= t)) for c, p, t in
                      zip(self.manifest.labels, row, thresholds, strict=True)}
            out.append(Moderation(any(s.flagged for s in scores.values()), scores, tokens,
                                  int(mine.sum())))
        return out


class IntentFront(Front):
    def __init__(self, directory: Path, manifest: Manifest) -> None:
        super().__init__(directory, manifest)
        self.out_of_scope = manifest.thresholds.get(OUT_OF_SCOPE)

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


FRONTS: dict[Task, type[Front]] = {Task.reward: RewardFront, Task.multilabel: ModerationFront,
                                   Task.multiclass: IntentFront}


def front_for(directory: Path, manifest: Manifest) -> Front:
    return FRONTS[manifest.task](directory, manifest)
