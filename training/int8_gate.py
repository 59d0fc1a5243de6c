"""The int8 gate: whether a model's int8 graph may be served in place of its fp32 one.

training/export.py quantises the fused fp32 graph and asks this module whether to keep the
result; the manifest records the decision (Int8Decision.record). Numpy and onnxruntime only, no
torch: bench/int8_portability.py reads it in a child process under CPU emulation.

The int8 gate. A point difference in validation accuracy is noise at this size (0.5 points of
838 pairs is 4 pairs), so the gate asks two questions that have stable answers:
- does int8 make the same decisions? For a reward model, the decisions are the pairs whose order
  fp32 decides: its calibrated P(chosen over rejected), what /v1/reward/compare answers, at
  least INT8_DECIDED_MARGIN from even. Of those, int8 must keep the order of at least
  INT8_MIN_DECIDED_AGREEMENT. A pair fp32 scores 0.48 or 0.52 is one the model cannot tell
  apart; any change of the graph flips some of them, so counting them measured how many
  near-ties a model has, not what int8 does (the default model, `python -m
  bench.int8_variants`: int8 flipped 107 of 1,694 validation pairs, 98 of them within 0.02 of
  even, and 2 of the 862 that fp32 decides).
  For a classifier, the share of texts whose decision int8 keeps must be at least
  INT8_MIN_AGREEMENT;
- how much could the metric really drop? A paired bootstrap over the validation examples (same
  resamples for both graphs, a fixed seed, so the decision is reproducible) gives a 95%
  interval of the drop; its upper end must be at most INT8_MAX_DROP_POINTS.
Both graphs score the examples in looks of INT8_LOOK (a seeded random order, so every look is
a fair sample of every source). Where the task has an agreement, the check stops at the first
look whose upper confidence bound on the share kept (Wilson, z = INT8_STOP_Z: one-sided 0.05% a
look, under 1% over every look of a large split) is below the share asked: a graph that
surely fails is rejected without scoring the rest. Likewise, once INT8_ACCEPT_AFTER examples are
scored, a graph that surely passes is accepted at a look: the drop's upper bound (bootstrap
mean + INT8_STOP_Z standard deviations) is within INT8_MAX_DROP_POINTS and, where the task has
an agreement, the lower Wilson bound on the share kept reaches the share asked. The decision
is then made, as always, on every example scored; the looks only end the scoring.

fp32's side of the check is the fp32 graph's outputs, or, where the training run saved its
scores of exactly these validation items (VALIDATION_SCORES, written by reward training's
calibration and checked by a digest of the encoded items), those: the parity gate has just
shown the graph equal to the model within 1e-4, and scoring the split again with fp32 took
most of the check's time.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from models.calibration import reward_of, sigmoid
from models.inputs import EncodedPair
from models.session import open_session, run

INT8_MIN_AGREEMENT = 0.97
INT8_DECIDED_MARGIN, INT8_MIN_DECIDED_AGREEMENT = 0.05, 0.99
INT8_MAX_DROP_POINTS = 2.0
BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 1000, 0
INT8_LOOK, INT8_STOP_Z = 256, 3.29
INT8_ACCEPT_AFTER, INTERIM_RESAMPLES = 2048, 200


VALIDATION_SCORES = "validation_scores.npz"


def items_digest(items: Sequence[EncodedPair]) -> str:
    """sha256 of the encoded items, in order: what saved scores are scores of."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(np.asarray(item.input_ids, np.int64).tobytes() + b"|")
        digest.update(np.asarray(item.token_type_ids, np.int64).tobytes() + b";")
    return digest.hexdigest()


def save_validation_scores(directory: Path, items: Sequence[EncodedPair],
                           scores: np.ndarray) -> Path:
    """The model's scores of `items` (one per item), for the int8 check's fp32 side."""
    path = directory / VALIDATION_SCORES
    np.savez(path, scores=np.asarray(scores, np.float32).reshape(len(items), 1),
             digest=np.array(items_digest(items)))
    return path


def saved_validation_scores(directory: Path, items: Sequence[EncodedPair]) -> np.ndarray | None:
    """The scores `directory` saved, when they are of exactly `items`; else None (also for a
    file that cannot be read: the check then scores the items with fp32 itself)."""
    path = directory / VALIDATION_SCORES
    if not path.is_file():
        return None
    try:
        with np.load(path) as saved:
            scores, digest = saved["scores"], str(saved["digest"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    return scores if len(scores) == len(items) and digest == items_digest(items) else None


Measure = Callable[[np.ndarray, np.ndarray], float]  # (outputs on items, example rows) -> metric


@dataclass(frozen=True)
class ValidationCheck:
    """The task metric the int8 graph must hold, on real validation inputs.

    `measure` computes the metric (higher is better) on a subset of the validation examples,
    given by their row numbers, so the bootstrap can resample examples; `kept`, where the task
    has one, says for each example it counts among the rows given (a reward check counts the
    pairs fp32 decides) whether int8 keeps fp32's decision (fp32 outputs, int8 outputs, example
    rows); `min_agreement` is the share it must keep. `item_rows` maps example rows to the
    items they read (a pair reads two)."""

    metric: str  # what is measured, on which data
    items: list[EncodedPair]
    examples: int
    measure: Measure
    kept: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None
    agreement_of: str = ""  # what `kept` measures
    min_agreement: float = INT8_MIN_AGREEMENT
    item_rows: Callable[[np.ndarray], np.ndarray] = lambda rows: rows

    def outputs(self, fp32: Path, int8: Path, pad_id: int,
                known_fp32: np.ndarray | None = None, threads: int | None = None
                ) -> CheckOutputs:
        """Both graphs' outputs, look by look, until every example is scored or int8 surely
        fails or surely passes. `known_fp32`: fp32's outputs of every item, already known
        (then only int8 is run). `threads`: onnxruntime's (default: all cores)."""
        order = np.random.default_rng(BOOTSTRAP_SEED).permutation(self.examples)
        sessions = (None if known_fp32 is not None else open_session(fp32, threads=threads),
                    open_session(int8, threads=threads))
        outputs: list[np.ndarray | None] = [known_fp32, None]
        runs = sum(s is not None for s in sessions)
        with tqdm(total=runs * len(self.items), unit="seq", desc="int8 check",
                  dynamic_ncols=True, leave=False) as bar:
            for start in range(0, self.examples, INT8_LOOK):
                items = self.item_rows(order[start:start + INT8_LOOK])
                for k, session in enumerate(sessions):
                    if session is None:
                        continue
                    out = run(session, [self.items[i] for i in items], pad_id=pad_id,
                              on_batch=lambda n, _tokens, _seconds: bar.update(n))
                    if outputs[k] is None:
                        outputs[k] = np.zeros((len(self.items), out.shape[1]), np.float32)
                    outputs[k][items] = out  # type: ignore[index]
                seen = order[:start + INT8_LOOK]
                if start + INT8_LOOK < self.examples and self.settled(
                        outputs[0], outputs[1], seen):  # type: ignore[arg-type]
                    break
        assert outputs[0] is not None and outputs[1] is not None
        return CheckOutputs(outputs[0], outputs[1], np.sort(seen))

    def settled(self, fp32: np.ndarray, int8: np.ndarray, seen: np.ndarray) -> bool:
        """Whether the examples `seen` so far already decide: int8 surely keeps too few
        decisions, or (after INT8_ACCEPT_AFTER examples) surely passes both questions."""
        agrees = True
        if self.kept is not None:
            kept = self.kept(fp32, int8, seen)
            share = share_kept(kept)
            if len(kept) and wilson_upper(share, len(kept)) < self.min_agreement:
                return True
            agrees = len(kept) > 0 and wilson_lower(share, len(kept)) >= self.min_agreement
        if not agrees or len(seen) < INT8_ACCEPT_AFTER:
            return False
        drops = bootstrap_drops(self, fp32, int8, seen, INTERIM_RESAMPLES)
        return float(np.mean(drops) + INT8_STOP_Z * np.std(drops)) <= INT8_MAX_DROP_POINTS


@dataclass(frozen=True)
class CheckOutputs:
    fp32: np.ndarray
    int8: np.ndarray
    rows: np.ndarray  # the example rows both graphs scored (all of them unless stopped early)


def share_kept(kept: np.ndarray) -> float:
    """The share of decisions int8 keeps; 1 when there were none to keep (a reward model that
    decides no pair: the bootstrap interval alone decides)."""
    return float(kept.mean()) if len(kept) else 1.0


def wilson_upper(share: float, n: int, z: float = INT8_STOP_Z) -> float:
    """Upper end of the Wilson score interval of a share seen in n trials."""
    centre = share + z * z / (2 * n)
    spread = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return float((centre + spread) / (1 + z * z / n))


def wilson_lower(share: float, n: int, z: float = INT8_STOP_Z) -> float:
    """Lower end of the Wilson score interval of a share seen in n trials."""
    return 1.0 - wilson_upper(1.0 - share, n, z)


def bootstrap_drops(check: ValidationCheck, fp32: np.ndarray, int8: np.ndarray,
                    rows: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """The metric's drop, fp32 - int8 in points, on paired resamples of `rows` (seeded)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    drops = []
    for _ in range(resamples):
        sample = rows[rng.integers(0, len(rows), len(rows))]
        drops.append((check.measure(fp32, sample) - check.measure(int8, sample)) * 100)
    return np.array(drops)


def pair_margins(out: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """r_chosen - r_rejected of the pairs `rows`, from outputs of n chosen items followed by
    their n rejected ones (a pairwise check's items)."""
    return reward_of(out[rows]) - reward_of(out[n + rows])


def pairwise_check(chosen: Sequence[EncodedPair], rejected: Sequence[EncodedPair],
                   data: str = "pooled validation", temperature: float = 1.0) -> ValidationCheck:
    """Pairwise accuracy, and the order int8 keeps on the pairs fp32 decides: those whose
    P(chosen over rejected) = sigmoid((r_chosen - r_rejected) / temperature), as the service
    answers it, is at least INT8_DECIDED_MARGIN from even."""
    n = len(chosen)

    def accuracy(out: np.ndarray, rows: np.ndarray) -> float:
        return float((pair_margins(out, rows, n) > 0).mean())

    def order_kept(fp32: np.ndarray, int8: np.ndarray, rows: np.ndarray) -> np.ndarray:
        margin, margin8 = pair_margins(fp32, rows, n), pair_margins(int8, rows, n)
        decided = np.abs(sigmoid(margin / temperature) - 0.5) >= INT8_DECIDED_MARGIN
        return (margin[decided] > 0) == (margin8[decided] > 0)

    return ValidationCheck(f"pairwise_accuracy ({data})", [*chosen, *rejected], n, accuracy,
                           order_kept, f"share of the pairs fp32 decides (P at least "
                           f"{INT8_DECIDED_MARGIN} from even) whose order int8 keeps",
                           INT8_MIN_DECIDED_AGREEMENT,
                           lambda rows: np.concatenate([rows, n + rows]))


@dataclass(frozen=True)
class Int8Decision:
    metric: str
    fp32: float
    int8: float
    drop_interval: tuple[float, float]  # 95% paired bootstrap interval of the drop, in points
    agreement: float | None
    agreement_of: str = ""  # what `agreement` measures
    agreed_on: int = 0  # the examples `agreement` counts
    min_agreement: float = INT8_MIN_AGREEMENT
    examples_checked: int = 0
    examples: int = 0  # checked < examples: stopped early, the looks settled it

    @property
    def drop_points(self) -> float:
        return (self.fp32 - self.int8) * 100

    @property
    def accepted(self) -> bool:
        agrees = self.agreement is None or self.agreement >= self.min_agreement
        return agrees and self.drop_interval[1] <= INT8_MAX_DROP_POINTS

    def record(self) -> dict[str, float | str]:
        out: dict[str, float | str] = {
            "accepted": "yes" if self.accepted else "no", "metric": self.metric,
            "fp32": self.fp32, "int8": self.int8, "drop_points": self.drop_points,
            "drop_low_points": self.drop_interval[0], "drop_high_points": self.drop_interval[1],
            "max_drop_points": INT8_MAX_DROP_POINTS,
            "bootstrap_resamples": float(BOOTSTRAP_RESAMPLES),
            "bootstrap_seed": float(BOOTSTRAP_SEED),
            "examples_checked": float(self.examples_checked), "examples": float(self.examples)}
        if self.agreement is not None:
            out |= {"agreement": self.agreement, "agreement_of": self.agreement_of,
                    "agreed_on": float(self.agreed_on), "min_agreement": self.min_agreement}
        return out


def decide_int8(check: ValidationCheck, fp32: np.ndarray, int8: np.ndarray,
                rows: np.ndarray | None = None) -> Int8Decision:
    """The gate's decision on the example `rows` both graphs scored (default: all)."""
    seen = np.arange(check.examples) if rows is None else rows
    low, high = np.percentile(bootstrap_drops(check, fp32, int8, seen), [2.5, 97.5])
    kept = check.kept(fp32, int8, seen) if check.kept else None
    return Int8Decision(check.metric, check.measure(fp32, seen), check.measure(int8, seen),
                        (float(low), float(high)),
                        None if kept is None else share_kept(kept),
                        check.agreement_of, 0 if kept is None else len(kept),
                        check.min_agreement, len(seen), check.examples)
