"""Evaluation for every task, shared by training runs and by `alignserve evaluate`.

reward: pairwise metrics per set and per subset, with the length-aware figures beside each:
the "longer reply wins" rule on the same pairs, the accuracy on the pairs whose chosen reply is
the shorter one, and the correlation of reward and response length over the set's responses.
moderation: per category metrics at the model's thresholds, "any", and the behavioural suites.
intent: top-1 accuracy, macro-F1 and ECE; out-of-scope recall where the model has a threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import TOKENIZER_FILE
from models.calibration import sigmoid, softmax
from models.inputs import PairEncoder
from models.manifest import Manifest
from models.taxonomy import CATEGORIES, OUT_OF_SCOPE
from training import modeling
from training.class_metrics import binary_metrics, multiclass_metrics, out_of_scope_metrics
from training.data.identity import CUES, IDENTITY, Cue
from training.data.labelled import TextExample, load_intent_jsonl, load_moderation_jsonl
from training.data.preference import load_generic
from training.data.records import Loaded, PreferencePair
from training.data.text_sets import (
    OOS_LABEL,
    SUITES,
    load_intent_data,
    load_moderation_data,
    own_sets,
)
from training.metrics import cut_metrics, length_metrics, pairwise_metrics
from training.modeling import AnyModel
from training.pairs import PairInputs
from training.run import finite
from training.texts import UNKNOWN, predict_logits


@dataclass
class SetResult:
    metrics: dict[str, float]
    chosen: np.ndarray
    rejected: np.ndarray


def set_result(pairs: Sequence[PreferencePair], chosen: np.ndarray, rejected: np.ndarray,
               temperature: float, cut: tuple[np.ndarray, np.ndarray]) -> SetResult:
    """A set's metrics; `cut` says whether the window cuts each chosen and rejected reply."""
    lengths = np.array([(len(p.chosen), len(p.rejected)) for p in pairs], dtype=np.float64)
    metrics = {**pairwise_metrics(chosen - rejected, temperature),
               **length_metrics(chosen, rejected, lengths[:, 0], lengths[:, 1]),
               **cut_metrics(chosen, rejected, *cut)}
    return SetResult(metrics, chosen, rejected)


def evaluate_sets(model: AnyModel, encoder: PairEncoder,
                  sets: Mapping[str, Sequence[PreferencePair]], temperature: float,
                  max_tokens: int = 4096) -> dict[str, SetResult]:
    """Metrics per set, and per subset where a set has several (hh-rlhf/helpful-base, hhh/…)."""
    results: dict[str, SetResult] = {}
    for name, pairs in sets.items():
        if not pairs:
            continue
        inputs = PairInputs.build(encoder, pairs)
        chosen, rejected = inputs.score(model, max_tokens, desc=f"eval {name}")
        cut = inputs.cut()
        results[name] = set_result(pairs, chosen, rejected, temperature, cut)
        subsets = np.array([pair.subset for pair in pairs])
        if len(set(subsets)) > 1:
            for subset in sorted(set(subsets)):
                mask = subsets == subset
                results[subset] = set_result([p for p, m in zip(pairs, mask, strict=True) if m],
                                             chosen[mask], rejected[mask], temperature,
                                             (cut[0][mask], cut[1][mask]))
    return results


def evaluate_reward_model(model_dir: Path, files: Sequence[Path] = (),
                          data_dir: Path | None = None, sets: Sequence[str] = (),
                          skip_invalid: bool = False, max_tokens: int = 4096
                          ) -> tuple[Manifest, dict[str, dict[str, float]], dict[str, Any]]:
    """With the model's own temperature: your JSONL files (per `subset` where records carry
    one), or else the catalogued sets (all of them, or those named in `sets`). Returns the
    manifest, the metrics and what was skipped per file."""
    from training.data.reward_data import load_reward_data

    manifest, encoder, model = load_model(model_dir)
    temperature = manifest.temperature
    chosen: dict[str, list[PreferencePair]] = {}
    skipped: dict[str, Any] = {}
    for path in files:
        loaded = Loaded(skip_invalid=skip_invalid)
        load_generic(path, loaded)
        chosen[path.stem], skipped[path.stem] = loaded.pairs, dict(loaded.skipped)
    if not files:
        catalogued = load_reward_data(data_dir).eval_sets
        unknown = set(sets) - set(catalogued)
        if unknown:
            raise ValueError(f"unknown sets {sorted(unknown)}; known: {sorted(catalogued)}")
        chosen = {k: v for k, v in catalogued.items() if not sets or k in sets}
    results = evaluate_sets(model, encoder, chosen, temperature or 1.0, max_tokens)
    return manifest, {name: r.metrics for name, r in results.items()}, skipped


def load_model(model_dir: Path) -> tuple[Manifest, PairEncoder, AnyModel]:
    """A trained model directory (the model/ folder a run writes, or an ensemble's)."""
    manifest = Manifest.load(model_dir)
    encoder = PairEncoder.from_file(model_dir / TOKENIZER_FILE, manifest.input)
    return manifest, encoder, modeling.load_model(model_dir)


# --- moderation ------------------------------------------------------------------------------

def moderation_scores(model: AnyModel, encoder: PairEncoder, examples: list[TextExample],
                      temperatures: dict[str, float], max_tokens: int, desc: str
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated probabilities (n, K), targets (n, K) with UNKNOWN)."""
    logits = predict_logits(model, encoder, [e.text for e in examples], max_tokens, desc)
    t = np.array([temperatures[c] for c in CATEGORIES])
    targets = np.array([[e.labels.get(c, UNKNOWN) for c in CATEGORIES] for e in examples])
    return sigmoid(logits / t), targets.reshape(len(examples), len(CATEGORIES))


def clean_flag_rate(probs: np.ndarray, targets: np.ndarray, thresholds: dict[str, float]
                    ) -> tuple[float, int]:
    """Over-flagging: the share of the clean rows (every category the source labels is 0)
    that one of those categories flags, and how many clean rows there are; a category the
    source is silent on cannot be judged wrong there."""
    known = targets != UNKNOWN
    clean = known.any(axis=1) & ((targets == 0) | ~known).all(axis=1)
    if not clean.any():
        return float("nan"), 0
    over = probs >= np.array([thresholds[c] for c in CATEGORIES])
    return float((over & known)[clean].any(axis=1).mean()), int(clean.sum())


def evaluate_moderation(probs: np.ndarray, targets: np.ndarray, thresholds: dict[str, float]
                        ) -> dict[str, dict[str, float]]:
    """Per category on its known labels; 'clean': the over-flagging rate on the clean rows;
    and 'any' (max probability against any positive) on the rows whose every category is
    known."""
    out = {}
    rate, n = clean_flag_rate(probs, targets, thresholds)
    if n:
        out["clean"] = {"flag_rate": rate, "n": float(n)}
    for k, category in enumerate(CATEGORIES):
        known = targets[:, k] != UNKNOWN
        if known.any():
            out[category] = binary_metrics(probs[known, k], targets[known, k],
                                           thresholds[category])
    complete = (targets != UNKNOWN).all(axis=1)
    if complete.any():
        flagged_any = flagged(probs, thresholds)
        any_metrics = binary_metrics(probs[complete].max(axis=1),
                                     targets[complete].max(axis=1), 0.5)
        positives = targets[complete].max(axis=1) == 1
        any_metrics["flag_rate"] = float(flagged_any[complete].mean())
        any_metrics["recall"] = float(flagged_any[complete][positives].mean()
                                      if positives.any() else float("nan"))
        out["any"] = {k: any_metrics[k] for k in ("auprc", "roc_auc", "flag_rate", "recall", "n")}
    return out


def cue_flag_rates(texts: Sequence[str], probs: np.ndarray, targets: np.ndarray,
                   threshold: float, cue: Cue = IDENTITY) -> dict[str, float] | None:
    """Unintended bias (training/data/identity.py): the share of the texts known not to be
    hate that are flagged as hate, among those with the cue (naming a group, a word of
    violence) and those without; None when the set labels no text as not hate."""
    k = CATEGORIES.index("hate")
    clean = targets[:, k] == 0
    if not clean.any():
        return None
    has = np.array([cue.found(t) for t in texts], dtype=bool)
    hate = probs[:, k] >= threshold
    out = {}
    for key, rows in ((cue.has, clean & has), (cue.lacks, clean & ~has)):
        out[f"hate_flag_rate_{key}"] = float(hate[rows].mean()) if rows.any() else float("nan")
        out[f"n_{key}"] = float(rows.sum())
    return out


def moderation_set_metrics(name: str, examples: Sequence[TextExample], probs: np.ndarray,
                           targets: np.ndarray, thresholds: dict[str, float]
                           ) -> dict[str, dict[str, float]]:
    """One set's entries in a moderation report: per category and over-flagging (a suite's
    figures come from evaluate_suites instead), and the flag rates with and without each cue
    when it labels hate."""
    out = {} if name in SUITES else {
        f"{name}/{key}": values
        for key, values in evaluate_moderation(probs, targets, thresholds).items()}
    texts = [e.text for e in examples]
    for entry, cue in CUES.items():
        rates = cue_flag_rates(texts, probs, targets, thresholds["hate"], cue)
        if rates is not None:
            out[f"{name}/{entry}"] = rates
    return out


def flagged(probs: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
    return np.asarray((probs >= np.array([thresholds[c] for c in CATEGORIES])).any(axis=1))


def evaluate_suites(tests: dict[str, list[TextExample]], probs: dict[str, np.ndarray],
                    thresholds: dict[str, float]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    if "hatecheck" in probs:
        examples, p = tests["hatecheck"], probs["hatecheck"]
        hate = p[:, CATEGORIES.index("hate")] >= thresholds["hate"]
        gold = np.array([e.labels["hate"] for e in examples]) == 1
        correct = hate == gold
        out["hatecheck"] = {"accuracy": float(correct.mean()),
                            "hateful_recall": float(hate[gold].mean()),
                            "non_hateful_flag_rate": float(hate[~gold].mean()),
                            "n": float(len(gold))}
        for functionality in sorted({e.group for e in examples}):
            rows = np.array([e.group == functionality for e in examples])
            out[f"hatecheck/{functionality}"] = {"accuracy": float(correct[rows].mean()),
                                                 "n": float(rows.sum())}
    if "xstest" in probs:
        safe = np.array([e.label == "safe" for e in tests["xstest"]])
        any_flag = flagged(probs["xstest"], thresholds)
        out["xstest"] = {"over_flagging_rate": float(any_flag[safe].mean()),
                         "unsafe_flag_rate": float(any_flag[~safe].mean()),
                         "n": float(len(safe))}
    if "simplesafetytests" in probs:
        examples = tests["simplesafetytests"]
        any_flag = flagged(probs["simplesafetytests"], thresholds)
        out["simplesafetytests"] = {"catch_rate": float(any_flag.mean()),
                                    "n": float(len(any_flag))}
        for area in sorted({e.group for e in examples}):
            rows = np.array([e.group == area for e in examples])
            out[f"simplesafetytests/{area}"] = {"catch_rate": float(any_flag[rows].mean()),
                                                "n": float(rows.sum())}
    return out


def category_temperatures(manifest: Manifest) -> dict[str, float]:
    """A moderation model's temperature per category, 1.0 where it has none."""
    temperatures = (manifest.calibration.temperatures or {}) if manifest.calibration else {}
    return {c: temperatures.get(c, 1.0) for c in CATEGORIES}


def evaluate_moderation_model(model_dir: Path, files: Sequence[Path] = (),
                              data_dir: Path | None = None, skip_invalid: bool = False,
                              max_tokens: int = 4096) -> dict[str, dict[str, float]]:
    """With the model's own temperatures and thresholds: your JSONL files, or else every
    catalogued held-out split and behavioural suite."""
    manifest, encoder, model = load_model(model_dir)
    tests = own_sets(files, load_moderation_jsonl, skip_invalid)
    if not files:
        tests = load_moderation_data(data_dir).tests
    metrics: dict[str, dict[str, float]] = {}
    probs = {}
    for name, examples in tests.items():
        p, targets = moderation_scores(model, encoder, examples,
                                       category_temperatures(manifest), max_tokens,
                                       f"eval {name}")
        probs[name] = p
        metrics.update(moderation_set_metrics(name, examples, p, targets, manifest.thresholds))
    metrics.update(evaluate_suites(tests, {k: v for k, v in probs.items() if k in SUITES},
                                   manifest.thresholds))
    return finite(metrics)


# --- intents ---------------------------------------------------------------------------------

def evaluate_intent_model(model_dir: Path, files: Sequence[Path] = (),
                          data_dir: Path | None = None, skip_invalid: bool = False,
                          max_tokens: int = 4096) -> dict[str, dict[str, float]]:
    """Your JSONL files, or else the test split of the set the model was trained on."""
    manifest, encoder, model = load_model(model_dir)
    temperature = (manifest.calibration.temperature or 1.0) if manifest.calibration else 1.0
    tests = own_sets(files, load_intent_jsonl, skip_invalid)
    if not files:
        dataset = next((d.name for d in manifest.data if d.name in ("banking77", "clinc150")),
                       None)
        if dataset is None:
            raise ValueError("the model was trained on your own data only: pass --data")
        tests = load_intent_data(dataset, data_dir).tests
    index = {label: i for i, label in enumerate(manifest.labels)}
    metrics: dict[str, dict[str, float]] = {}
    for name, examples in tests.items():
        unknown = sorted({e.label for e in examples} - set(index) - {OOS_LABEL})
        if unknown:
            raise ValueError(f"{name}: intents the model does not know: {unknown[:5]}")
        logits = predict_logits(model, encoder, [e.text for e in examples], max_tokens,
                                f"eval {name}")
        probs = softmax(logits / temperature)
        targets = np.array([index.get(e.label, -1) for e in examples])
        in_scope = targets >= 0
        metrics[name] = multiclass_metrics(probs[in_scope], targets[in_scope])
        if OUT_OF_SCOPE in manifest.thresholds and (~in_scope).any():
            metrics[f"{name} out-of-scope"] = out_of_scope_metrics(
                probs, targets, in_scope, manifest.thresholds[OUT_OF_SCOPE])
    return finite(metrics)
