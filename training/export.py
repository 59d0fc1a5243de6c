"""Checkpoint -> artifact: ONNX fp32 with fused attention, a parity gate, int8 and fp16.

    alignserve export --checkpoint runs/reward/model --name reward

The artifact directory holds the layout models/artifact.py defines: model.onnx (fused fp32,
parity-checked against PyTorch), model.int8.onnx (dynamic per-channel, 7-bit weights, kept only
when it passes the int8 gate below), model.fp16.onnx (for GPU hosts, parity-checked on the
CPU), tokenizer.json and a complete manifest.json.

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
import logging
import shutil
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from models.artifact import FP16, FP32, INT8, TOKENIZER_FILE, WEIGHTS_DIR
from models.calibration import reward_of, sigmoid
from models.inputs import EncodedPair, PairEncoder, pad_batch
from models.manifest import Manifest, file_digests, library_versions
from models.session import INPUT_NAMES, OUTPUT_NAME, feeds, open_session, run
from training.modeling import AnyModel, EnsembleModel, ScoringModel, load_model, num_outputs
from training.scoring import to_torch

OPSET = 17
# Rewards and logits are O(1); fp32 graphs agree with PyTorch to ~1e-6, fp16 to ~1e-3. int8 has
# no value tolerance: the validation metric decides whether it ships.
TOLERANCE = {FP32: 1e-4, FP16: 5e-2}
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


class ParityError(RuntimeError):
    pass


def export_onnx(model: AnyModel, path: Path, opset: int = OPSET) -> Path:
    """Trace with the TorchScript exporter (dynamo=False) so onnxruntime's optimiser can
    recognise and fuse the eager attention pattern."""
    model.eval()
    dummy = {name: torch.ones((2, 8), dtype=torch.int64) for name in INPUT_NAMES}
    dynamic = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    with warnings.catch_warnings():
        # Expected, and checked: the exporter warns that advanced indexing "will produce
        # incorrect results" for negative indices (the pooling's are never negative) and that
        # traced Python conditions become constants. The parity gate below compares the
        # graph with torch on real inputs of mixed lengths and refuses any that disagrees.
        warnings.filterwarnings("ignore", message=".*aten::index.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(model, tuple(dummy[name] for name in INPUT_NAMES), str(path),
                          input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                          dynamic_axes={**dynamic, OUTPUT_NAME: {0: "batch"}},
                          opset_version=opset, dynamo=False)
    return path


# onnxruntime's fusions know these encoders' graphs (RoBERTa's and ELECTRA's are BERT's);
# DeBERTa's disentangled attention has no fused kernel: its graph is kept as exported.
FUSABLE = {"bert", "roberta", "electra"}


def fuse(raw: Path, fused: Path, num_heads: int, hidden_size: int, model_type: str = "bert",
         members: int = 1) -> dict[str, int]:
    """Attention, LayerNorm and GELU fusion; returns the fused operator counts. An ensemble's
    members share one attention mask, which the embedding fusion cannot place twice: their
    embeddings stay unfused (attention, the bulk of the work, is fused in each)."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    if model_type not in FUSABLE:
        shutil.copy(raw, fused)
        return {}
    options = FusionOptions("bert")
    options.enable_embed_layer_norm = members == 1
    optimized = optimizer.optimize_model(str(raw), model_type="bert", num_heads=num_heads,
                                         hidden_size=hidden_size, opt_level=0,
                                         optimization_options=options)
    optimized.save_model_to_file(str(fused))
    return {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}


def to_fp16(fused: Path, out: Path) -> Path:
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(fused)))
    model.convert_float_to_float16(keep_io_types=True)  # the service feeds int64, reads fp32
    model.save_model_to_file(str(out))
    return out


def quantise_int8(fused: Path, out: Path, reduce_range: bool = True) -> Path:
    """Dynamic int8: weights per channel, activations per batch. Weights take 7 bits
    (`reduce_range`) so that no x86 CPU saturates: without VNNI, onnxruntime sums pairs of
    uint8 x int8 products in 16 bits (VPMADDUBSW), which saturates for 8-bit weights, so an
    int8 graph checked on a VNNI CPU scored otherwise on an AVX2 one. Rounding still differs
    between instruction sets, far less (`python -m bench.int8_portability`)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Fused contrib ops (Attention, SkipLayerNormalization) defeat shape inference; their
    # tensors are float. The quantiser's advice to pre-process (shape inference) is logged as a
    # warning on every run; it cannot apply to fused graphs, and the int8 check that follows
    # measures the result, so it is not shown.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(fused), str(out), per_channel=True, reduce_range=reduce_range,
                         weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)
    return out


def parity_batches(items: Sequence[EncodedPair]) -> list[list[int]]:
    """Single items, and the whole set as one padded mixed-length batch in its given order."""
    return [[i] for i in range(min(4, len(items)))] + [list(range(len(items)))]


def check_parity(model: AnyModel, graph: Path, items: Sequence[EncodedPair],
                 tolerance: float, pad_id: int = 0) -> float:
    """Shapes first, then values; returns the max absolute difference or raises ParityError."""
    session = open_session(graph)
    worst = 0.0
    for indices in parity_batches(items):
        arrays = pad_batch([items[i] for i in indices], pad_id)
        with torch.inference_mode():
            expected = model(**to_torch(arrays)).float().numpy()
        (actual,) = session.run([OUTPUT_NAME], feeds(session, arrays))
        shape = arrays["input_ids"].shape
        if actual.shape != expected.shape:
            raise ParityError(f"{graph.name}: output '{OUTPUT_NAME}' has shape {actual.shape}, "
                              f"PyTorch gives {expected.shape} (input {shape})")
        worst = max(worst, float(np.abs(actual.astype(np.float32) - expected).max()))
    if worst > tolerance:
        raise ParityError(f"{graph.name}: output '{OUTPUT_NAME}' differs from PyTorch by up to "
                          f"{worst:.3g}, above the tolerance {tolerance:g}")
    return worst


def count_ops(graph: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(graph)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


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
                known_fp32: np.ndarray | None = None) -> CheckOutputs:
        """Both graphs' outputs, look by look, until every example is scored or int8 surely
        fails or surely passes. `known_fp32`: fp32's outputs of every item, already known
        (then only int8 is run)."""
        order = np.random.default_rng(BOOTSTRAP_SEED).permutation(self.examples)
        sessions = (None if known_fp32 is not None else open_session(fp32), open_session(int8))
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


def keep_weights(checkpoint: Path, weights: Path) -> None:
    """The trained model beside its graphs, so that a re-training can continue from it."""
    shutil.rmtree(weights, ignore_errors=True)
    shutil.copytree(checkpoint / "encoder", weights / "encoder")
    for name in ("head.safetensors", TOKENIZER_FILE):
        shutil.copy(checkpoint / name, weights / name)


def export_checkpoint(checkpoint: Path, output: Path, name: str, check: ValidationCheck,
                      opset: int = OPSET, say: Callable[[str], None] | None = None) -> Manifest:
    """Build the artifact in `output`; raises ParityError when a graph disagrees. `say` hears
    what each step is doing (the int8 check is the long one: every validation item scored by
    both graphs); by default, stdout at once."""
    if say is None:
        def say(line: str) -> None:
            print(line, flush=True)

    manifest = Manifest.load(checkpoint)
    Manifest.model_validate({**manifest.model_dump(), "name": name})  # refuse a bad name first
    model = load_model(checkpoint)
    encoder = PairEncoder.from_file(checkpoint / TOKENIZER_FILE, manifest.input)
    probe = sorted(check.items[:64], key=len)[::4]  # real inputs of mixed lengths
    output.mkdir(parents=True, exist_ok=True)
    shutil.copy(checkpoint / TOKENIZER_FILE, output / TOKENIZER_FILE)
    if isinstance(model, ScoringModel):  # what a re-training continues (not for imports)
        keep_weights(checkpoint, output / WEIGHTS_DIR)

    say(f"export {name}: tracing the model to ONNX, fusing attention, fp32 and fp16 parity")
    raw = export_onnx(model, output / "model.raw.onnx", opset)
    config = model.config
    fused_ops = fuse(raw, output / FP32, config.num_attention_heads, config.hidden_size,
                     config.model_type, num_outputs(model) if isinstance(model, EnsembleModel)
                     else 1)
    raw.unlink()
    parity = {"fp32": check_parity(model, output / FP32, probe, TOLERANCE[FP32], encoder.pad_id)}
    to_fp16(output / FP32, output / FP16)
    parity["fp16"] = check_parity(model, output / FP16, probe, TOLERANCE[FP16], encoder.pad_id)

    known = saved_validation_scores(checkpoint, check.items)
    graphs = ("the int8 graph (fp32's: the scores training saved of these inputs)"
              if known is not None else "the fp32 and the int8 graph")
    say(f"export {name}: int8 check, quantising, then scoring the {len(check.items):,} "
        f"validation inputs with {graphs} ({check.metric}; stops early once the answer is "
        "sure)")
    quantise_int8(output / FP32, output / INT8)
    scored = check.outputs(output / FP32, output / INT8, encoder.pad_id, known)
    decision = decide_int8(check, scored.fp32, scored.int8, scored.rows)
    if decision.accepted:
        parity["int8"] = check_parity(model, output / INT8, probe, float("inf"), encoder.pad_id)
    else:
        (output / INT8).unlink()

    exported = manifest.model_copy(update={
        "name": name, "opset": opset, "parity_max_diff": parity,
        "quantisation": {"int8": decision.record(),
                         "fused_operators": {k: float(v) for k, v in fused_ops.items()}},
        "files": file_digests(output),
        "versions": {**manifest.versions,
                     **library_versions("torch", "onnx", "onnxruntime", "tokenizers")}})
    return Manifest.model_validate(exported.model_dump())  # re-validate the updated copy
