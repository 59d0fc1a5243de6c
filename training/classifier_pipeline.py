"""`alignserve train moderation|intent`: data -> training (the shared trainer) -> calibration
and decision thresholds on validation -> evaluation -> model directory, report.json, plots.

    moderation: Davidson (carved 80/10/10 by text hash), TweetEval hate and offensive (their own
                splits), plus your JSONL; evaluated on each held-out test split and on the
                behavioural suites HateCheck, XSTest and SimpleSafetyTests (never trained on).
    intent:     banking77 (validation carved from train, the official test untouched) or
                CLINC150 (in-scope intents; its out-of-scope queries choose and test the
                out_of_scope threshold), or your own JSONL.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.calibration import sigmoid, softmax
from models.inputs import InputFormat, PairEncoder
from models.manifest import (
    Calibration,
    DataFingerprint,
    Manifest,
    Task,
    file_digests,
    library_versions,
)
from models.taxonomy import CATEGORIES, OUT_OF_SCOPE
from training import report
from training.class_metrics import binary_metrics, multiclass_metrics, out_of_scope_metrics
from training.classify import (
    UNKNOWN,
    EncodedTexts,
    best_f1_threshold,
    fit_category_temperatures,
    fit_intent_temperature,
    multiclass_objective,
    multilabel_objective,
    out_of_scope_threshold,
    predict_logits,
)
from training.config import TrainConfig
from training.data import catalogue, labelled_sets
from training.data.labelled import (
    Labelled,
    TextExample,
    load_intent_jsonl,
    load_moderation_jsonl,
)
from training.data.split import split_of
from training.modeling import ScoringModel, export_tokenizer, resolve_backbone
from training.pipeline import RunResult, code_version
from training.scoring import score
from training.trainer import Trainer, run_training, sample

MODERATION_SOURCES = ("davidson", "tweeteval-hate", "tweeteval-offensive")
SUITES = ("hatecheck", "xstest", "simplesafetytests")
OOS_LABEL = "oos"  # CLINC150's name for its out-of-scope queries


@dataclass
class TextData:
    train: list[TextExample] = field(default_factory=list)
    validation: list[TextExample] = field(default_factory=list)
    tests: dict[str, list[TextExample]] = field(default_factory=dict)
    fingerprints: list[DataFingerprint] = field(default_factory=list)


def _add_own(data: TextData, path: Path, parse: Any, skip_invalid: bool) -> None:
    """Your JSONL, carved 80/10/10 by text hash; its test part is reported on its own."""
    own = Labelled(skip_invalid=skip_invalid)
    parse(path, own)
    test: list[TextExample] = []
    for example in own.examples:
        part = split_of(example.text.lower())
        (data.train if part == "train" else data.validation if part == "validation"
         else test).append(example)
    data.tests[path.stem] = test
    data.fingerprints.append(DataFingerprint(
        name=path.stem, files={path.name: catalogue.sha256_file(path)},
        records=len(own.examples), skipped=dict(own.skipped)))


def load_moderation_data(data_dir: Path | None = None, extra: Sequence[Path] = (),
                         skip_invalid: bool = False, suites: bool = True) -> TextData:
    data = TextData()
    for name in (*MODERATION_SOURCES, *(SUITES if suites else ())):
        entry, splits = labelled_sets.load_labelled(name, data_dir)
        data.fingerprints.append(entry.fingerprint(splits))
        if entry.kind == "suite":
            data.tests[name] = splits["test"].examples
            continue
        data.train += splits["train"].examples
        data.validation += splits["validation"].examples
        data.tests[name] = splits["test"].examples
    for path in extra:
        _add_own(data, path, load_moderation_jsonl, skip_invalid)
    return data


def load_intent_data(dataset: str, data_dir: Path | None = None, extra: Sequence[Path] = (),
                     skip_invalid: bool = False) -> TextData:
    """dataset: 'banking77', 'clinc150' or 'own' (only the --train-data files)."""
    data = TextData()
    if dataset != "own":
        entry, splits = labelled_sets.load_labelled(dataset, data_dir)
        if entry.kind != "intent":
            raise ValueError(f"{dataset} is not an intent set")
        data.fingerprints.append(entry.fingerprint(splits))
        data.train, data.validation = splits["train"].examples, splits["validation"].examples
        data.tests[dataset] = splits["test"].examples
    for path in extra:
        _add_own(data, path, load_intent_jsonl, skip_invalid)
    if not data.train:
        raise ValueError("no intent training examples: give a dataset or --train-data")
    return data


def _setup(config: TrainConfig, output: Path) -> tuple[Path, Path, PairEncoder]:
    if config.threads:
        torch.set_num_threads(config.threads)
    backbone = resolve_backbone(config.backbone)
    model_dir = output / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    fmt = InputFormat(kind="text", max_length=config.max_length, min_prompt_tokens=0)
    return backbone, model_dir, PairEncoder.from_file(export_tokenizer(backbone, model_dir), fmt)


def finite(metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Without the undefined figures (a precision with nothing flagged is NaN): JSON has no NaN."""
    return {name: {k: v for k, v in values.items() if v == v} for name, values in
            metrics.items()}


def _finish(output: Path, model: ScoringModel, model_dir: Path, manifest: Manifest,
            summary: dict[str, Any], metrics: dict[str, dict[str, float]],
            tables: Sequence[tuple[Sequence[str], Sequence[str]]], started: float
            ) -> RunResult:
    """tables: (columns, rows) of the printed summary; rows absent from `metrics` are left out."""
    model.save(model_dir)
    manifest = manifest.model_copy(update={"files": file_digests(model_dir),
                                           "metrics": finite(manifest.metrics)})
    Manifest.model_validate(manifest.model_dump()).save(model_dir)
    summary["timings"] = {"total_s": time.perf_counter() - started}
    summary["model_dir"] = str(model_dir)
    summary["eval"] = finite(metrics)
    report.write_json(output / "report.json", summary)
    for columns, rows in tables:
        shown = {row: metrics[row] for row in rows if row in metrics}
        if shown:
            print(report.summary_table(shown, columns))
    print(f"{summary['timings']['total_s']:.0f} s in all; model in {model_dir}; report in "
          f"{output / 'report.json'}")
    return RunResult(model_dir, summary)


# --- moderation -----------------------------------------------------------------------------

def moderation_scores(model: ScoringModel, encoder: PairEncoder, examples: list[TextExample],
                      temperatures: dict[str, float], max_tokens: int, desc: str
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated probabilities (n, K), targets (n, K) with UNKNOWN)."""
    logits = predict_logits(model, encoder, [e.text for e in examples], max_tokens, desc)
    t = np.array([temperatures[c] for c in CATEGORIES])
    targets = np.array([[e.labels.get(c, UNKNOWN) for c in CATEGORIES] for e in examples])
    return sigmoid(logits / t), targets.reshape(len(examples), len(CATEGORIES))


def evaluate_moderation(probs: np.ndarray, targets: np.ndarray, thresholds: dict[str, float]
                        ) -> dict[str, dict[str, float]]:
    """Per category on its known labels, and 'any' (max probability against any positive) on
    the rows whose every category is known."""
    out = {}
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


def train_moderation(config: TrainConfig, output: Path, data_dir: Path | None = None,
                     name: str = "moderation", preset: str | None = None, resume: bool = False,
                     stop_at: int | None = None, train_data: Sequence[Path] = (),
                     skip_invalid: bool = False) -> RunResult | None:
    started = time.perf_counter()
    backbone, model_dir, encoder = _setup(config, output)
    data = load_moderation_data(data_dir, train_data, skip_invalid)
    train = sample(data.train, config.max_train_pairs, config.seed)
    encoded = EncodedTexts.multilabel(encoder, train, CATEGORIES)
    torch.manual_seed(config.seed)
    model = ScoringModel.from_backbone(backbone, num_outputs=len(CATEGORIES))
    trained = run_training(model, encoded, "texts", multilabel_objective(), config,
                           output, encoder.pad_id, resume, stop_at)
    if trained is None:
        return None
    trainer, history = trained

    max_tokens = config.eval_batch_tokens
    validation = EncodedTexts.multilabel(encoder, data.validation, CATEGORIES)
    raw = score(model, validation.items, max_tokens, encoder.pad_id, "calibrate")
    val_targets = validation.targets
    temperatures = fit_category_temperatures(raw, val_targets, CATEGORIES)
    val_probs = sigmoid(raw / np.array([temperatures[c] for c in CATEGORIES]))
    thresholds = {}
    for k, category in enumerate(CATEGORIES):
        known = val_targets[:, k] != UNKNOWN
        thresholds[category] = best_f1_threshold(val_probs[known, k], val_targets[known, k])

    metrics: dict[str, dict[str, float]] = {}
    for k, category in enumerate(CATEGORIES):  # before calibration, for the record
        known = val_targets[:, k] != UNKNOWN
        metrics[f"validation (T=1)/{category}"] = binary_metrics(
            sigmoid(raw[known, k]), val_targets[known, k], thresholds[category])
    scored = {"validation": (val_probs, val_targets)}
    for set_name, examples in data.tests.items():
        scored[set_name] = moderation_scores(model, encoder, examples, temperatures,
                                             max_tokens, f"eval {set_name}")
    for set_name, (probs, targets) in scored.items():
        if set_name in SUITES:
            continue
        for key, values in evaluate_moderation(probs, targets, thresholds).items():
            metrics[f"{set_name}/{key}"] = values
    metrics.update(evaluate_suites(data.tests, {k: v[0] for k, v in scored.items()
                                                if k in SUITES}, thresholds))

    plots = [report.plot_training(history, output / "training_curves.png"),
             report.plot_probability_reliability(
                 {f"{c}, {s}": (p[known, k], t[known, k])
                  for s in ("validation", *MODERATION_SOURCES)
                  for (p, t) in [scored[s]] for k, c in enumerate(CATEGORIES)
                  for known in [t[:, k] != UNKNOWN] if known.any()},
                 output / "reliability.png", "calibrated P(category)"),
             report.plot_pr_curves(
                 {f"{c}, {s} test": (p[known, k], t[known, k])
                  for s in MODERATION_SOURCES for (p, t) in [scored[s]]
                  for k, c in enumerate(CATEGORIES)
                  for known in [t[:, k] != UNKNOWN] if known.any()},
                 output / "pr_curves.png")]
    goal = "best F1 on the validation split, per category"
    manifest = Manifest(
        name=name, version=datetime.now(UTC).strftime("%Y%m%d-%H%M%S"), task=Task.multilabel,
        labels=list(CATEGORIES), input=encoder.format,
        calibration=Calibration(temperatures=temperatures, fitted_on="moderation validation "
                                "splits (known labels only)", n=len(data.validation)),
        thresholds=thresholds, threshold_goal=goal, metrics=metrics, data=data.fingerprints,
        backbone=str(config.backbone), code_version=code_version(),
        versions=library_versions("torch", "transformers", "tokenizers"))
    summary = _summary("moderation", name, manifest, preset, config, data, len(train), trainer,
                       history, metrics, plots)
    summary["calibration"] = {"temperatures": temperatures, "thresholds": thresholds,
                              "threshold_goal": goal}
    sets = ("validation (T=1)", "validation", *MODERATION_SOURCES, *(p.stem for p in train_data))
    return _finish(output, model, model_dir, manifest, summary, metrics, [
        (("auprc", "roc_auc", "precision", "recall", "f1", "ece", "flag_rate", "n"),
         [f"{s}/{c}" for s in sets for c in (*CATEGORIES, "any")]),
        (("accuracy", "hateful_recall", "non_hateful_flag_rate", "over_flagging_rate",
          "unsafe_flag_rate", "catch_rate", "n"), SUITES)], started)


# --- intents --------------------------------------------------------------------------------

def train_intent(config: TrainConfig, output: Path, dataset: str = "banking77",
                 data_dir: Path | None = None, name: str = "intent",
                 preset: str | None = None, resume: bool = False, stop_at: int | None = None,
                 train_data: Sequence[Path] = (), skip_invalid: bool = False
                 ) -> RunResult | None:
    started = time.perf_counter()
    backbone, model_dir, encoder = _setup(config, output)
    data = load_intent_data(dataset, data_dir, train_data, skip_invalid)
    in_scope = [e for e in data.train if e.label != OOS_LABEL]
    labels = sorted({e.label for e in in_scope})
    train = sample(in_scope, config.max_train_pairs, config.seed)
    encoded = EncodedTexts.multiclass(encoder, train, labels)
    torch.manual_seed(config.seed)
    model = ScoringModel.from_backbone(backbone, num_outputs=len(labels))
    trained = run_training(model, encoded, "texts", multiclass_objective(), config,
                           output, encoder.pad_id, resume, stop_at)
    if trained is None:
        return None
    trainer, history = trained
    max_tokens = config.eval_batch_tokens
    index = {label: i for i, label in enumerate(labels)}

    def scored(examples: list[TextExample], desc: str
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(logits, targets (-1 when out of scope or unseen), in-scope mask)."""
        logits = predict_logits(model, encoder, [e.text for e in examples], max_tokens, desc)
        targets = np.array([index.get(e.label, -1) for e in examples])
        return logits, targets, np.array([e.label != OOS_LABEL for e in examples])

    val_logits, val_targets, val_in = scored(data.validation, "calibrate")
    known = val_in & (val_targets >= 0)
    temperature = fit_intent_temperature(val_logits[known], val_targets[known])
    val_probs = softmax(val_logits / temperature)
    thresholds = {}
    if (~val_in).any():
        correct = val_probs.argmax(axis=1) == val_targets
        thresholds[OUT_OF_SCOPE] = out_of_scope_threshold(val_probs.max(axis=1), val_in, correct)

    metrics = {"validation (T=1)": multiclass_metrics(softmax(val_logits[known]),
                                                      val_targets[known]),
               "validation": multiclass_metrics(val_probs[known], val_targets[known])}
    reliability = {"validation, T=1": _top_label(softmax(val_logits[known]), val_targets[known]),
                   f"validation, T={temperature:.2f}": _top_label(val_probs[known],
                                                                  val_targets[known])}
    confusions: dict[str, list[dict[str, Any]]] = {}
    for set_name, examples in data.tests.items():
        logits, targets, in_scope_rows = scored(examples, f"eval {set_name}")
        probs = softmax(logits / temperature)
        seen = in_scope_rows & (targets >= 0)
        metrics[set_name] = multiclass_metrics(probs[seen], targets[seen])
        reliability[f"{set_name} test"] = _top_label(probs[seen], targets[seen])
        confusions[set_name] = top_confusions(probs[seen].argmax(axis=1), targets[seen], labels)
        if OUT_OF_SCOPE in thresholds:
            metrics[f"{set_name} out-of-scope"] = out_of_scope_metrics(
                probs, targets, in_scope_rows, thresholds[OUT_OF_SCOPE])
    plots = [report.plot_training(history, output / "training_curves.png"),
             report.plot_probability_reliability(reliability, output / "reliability.png",
                                                 "calibrated P(top intent)")]
    goal = ("maximise (in-scope accuracy + out-of-scope recall) / 2 on validation"
            if thresholds else None)
    manifest = Manifest(
        name=name, version=datetime.now(UTC).strftime("%Y%m%d-%H%M%S"), task=Task.multiclass,
        labels=labels, input=encoder.format,
        calibration=Calibration(temperature=temperature, fitted_on=f"{dataset} validation "
                                "(in scope)", n=int(known.sum())),
        thresholds=thresholds, threshold_goal=goal, metrics=metrics, data=data.fingerprints,
        backbone=str(config.backbone), code_version=code_version(),
        versions=library_versions("torch", "transformers", "tokenizers"))
    summary = _summary("intent", name, manifest, preset, config, data, len(train), trainer,
                       history, metrics, plots)
    summary["calibration"] = {"temperature": temperature, "thresholds": thresholds,
                              "threshold_goal": goal}
    summary["confusions"] = confusions
    for set_name, rows in confusions.items():
        print(f"most frequent confusions on {set_name}: " + "; ".join(
            f"{r['true']} -> {r['predicted']} ({r['count']})" for r in rows[:5]))
    return _finish(output, model, model_dir, manifest, summary, metrics, [
        (("accuracy", "macro_f1", "ece", "in_scope_accuracy", "out_of_scope_recall", "n"),
         list(metrics))], started)


def _top_label(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return probs.max(axis=1), (probs.argmax(axis=1) == targets).astype(np.float64)


def top_confusions(predicted: np.ndarray, targets: np.ndarray, labels: Sequence[str],
                   top: int = 15) -> list[dict[str, Any]]:
    """The most frequent (true, predicted) mistakes: the confusion summary for intents."""
    pairs: dict[tuple[int, int], int] = {}
    for t, p in zip(targets.tolist(), predicted.tolist(), strict=True):
        if t != p:
            pairs[(t, p)] = pairs.get((t, p), 0) + 1
    ranked = sorted(pairs.items(), key=lambda kv: -kv[1])[:top]
    return [{"true": labels[t], "predicted": labels[p], "count": n} for (t, p), n in ranked]


def _summary(task: str, name: str, manifest: Manifest, preset: str | None, config: TrainConfig,
             data: TextData, used: int, trainer: Trainer, history: list[dict[str, float]],
             metrics: dict[str, dict[str, float]], plots: list[Path]) -> dict[str, Any]:
    tail = history[-50:]
    return {
        "task": task, "name": name, "version": manifest.version, "preset": preset,
        "config": config.to_dict(), "data": [f.model_dump() for f in data.fingerprints],
        "split": {"train": len(data.train), "validation": len(data.validation),
                  "train_used": used, **{f"test/{k}": len(v) for k, v in data.tests.items()}},
        "training": {"steps": trainer.total_steps,
                     "final_loss": float(np.mean([h["loss"] for h in tail])),
                     "final_accuracy": float(np.mean([h["accuracy"] for h in tail]))},
        "eval": metrics, "plots": [p.name for p in plots],
    }


# --- `alignserve evaluate moderation|intent` ------------------------------------------------

def _load_model(model_dir: Path) -> tuple[Manifest, PairEncoder, ScoringModel]:
    manifest = Manifest.load(model_dir)
    encoder = PairEncoder.from_file(model_dir / "tokenizer.json", manifest.input)
    return manifest, encoder, ScoringModel.load(model_dir)


def _own_sets(files: Sequence[Path], parse: Any, skip_invalid: bool
              ) -> dict[str, list[TextExample]]:
    tests = {}
    for path in files:
        own = Labelled(skip_invalid=skip_invalid)
        parse(path, own)
        tests[path.stem] = own.examples
    return tests


def evaluate_moderation_model(model_dir: Path, files: Sequence[Path] = (),
                              data_dir: Path | None = None, skip_invalid: bool = False,
                              max_tokens: int = 4096) -> dict[str, dict[str, float]]:
    """With the model's own temperatures and thresholds: your JSONL files, or else every
    catalogued held-out split and behavioural suite."""
    manifest, encoder, model = _load_model(model_dir)
    temperatures = (manifest.calibration.temperatures or {}) if manifest.calibration else {}
    tests = _own_sets(files, load_moderation_jsonl, skip_invalid)
    if not files:
        tests = load_moderation_data(data_dir).tests
    metrics: dict[str, dict[str, float]] = {}
    probs = {}
    for name, examples in tests.items():
        p, targets = moderation_scores(model, encoder, examples,
                                       {c: temperatures.get(c, 1.0) for c in CATEGORIES},
                                       max_tokens, f"eval {name}")
        probs[name] = p
        if name not in SUITES:
            for key, values in evaluate_moderation(p, targets, manifest.thresholds).items():
                metrics[f"{name}/{key}"] = values
    metrics.update(evaluate_suites(tests, {k: v for k, v in probs.items() if k in SUITES},
                                   manifest.thresholds))
    return finite(metrics)


def evaluate_intent_model(model_dir: Path, files: Sequence[Path] = (),
                          data_dir: Path | None = None, skip_invalid: bool = False,
                          max_tokens: int = 4096) -> dict[str, dict[str, float]]:
    """Your JSONL files, or else the test split of the set the model was trained on."""
    manifest, encoder, model = _load_model(model_dir)
    temperature = (manifest.calibration.temperature or 1.0) if manifest.calibration else 1.0
    tests = _own_sets(files, load_intent_jsonl, skip_invalid)
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
