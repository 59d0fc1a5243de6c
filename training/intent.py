"""`alignserve train intent`: what is particular to the multi-class intent classifier.

Data: banking77 (validation carved from train, the official test untouched), CLINC150 (the
in-scope intents; its out-of-scope queries choose and test the out_of_scope threshold), or your
own JSONL. Objective: softmax cross-entropy. Calibration: one temperature; with out-of-scope
queries, the confidence threshold that maximises (in-scope accuracy + out-of-scope recall) / 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.calibration import softmax
from models.inputs import InputFormat
from models.manifest import Calibration, Task
from models.taxonomy import OUT_OF_SCOPE
from training import report
from training.class_metrics import multiclass_metrics, out_of_scope_metrics
from training.config import TrainConfig
from training.data.labelled import TextExample
from training.data.text_sets import OOS_LABEL, load_intent_data
from training.run import Run, RunResult
from training.texts import (
    EncodedTexts,
    fit_intent_temperature,
    multiclass_objective,
    out_of_scope_threshold,
    predict_logits,
)

THRESHOLD_GOAL = "maximise (in-scope accuracy + out-of-scope recall) / 2 on validation"
Scored = tuple[np.ndarray, np.ndarray, np.ndarray]  # logits, targets (-1: not known), in scope


def train_intent(config: TrainConfig, output: Path, dataset: str = "banking77",
                 data_dir: Path | None = None, name: str = "intent",
                 preset: str | None = None, resume: bool = False, stop_at: int | None = None,
                 train_data: Sequence[Path] = (), skip_invalid: bool = False,
                 train_only: Sequence[Path] = ()) -> RunResult | None:
    run = Run.start("intent", name, preset, config, output,
                    InputFormat(kind="text", max_length=config.max_length, min_prompt_tokens=0))
    data = load_intent_data(dataset, data_dir, train_data, skip_invalid, train_only)
    labels = sorted({e.label for e in data.train + data.own_train if e.label != OOS_LABEL})
    train = [e for e in data.training(config.max_train_texts, config.seed, config.replay)
             if e.label != OOS_LABEL]
    model = run.new_model(len(labels))
    trained = run.train(model, EncodedTexts.multiclass(run.encoder, train, labels), "texts",
                        multiclass_objective(), resume, stop_at)
    if trained is None:
        return None
    trainer, history = trained
    index = {label: i for i, label in enumerate(labels)}

    def scored(examples: list[TextExample], desc: str) -> Scored:
        logits = predict_logits(model, run.encoder, [e.text for e in examples],
                                config.eval_batch_tokens, desc)
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
    run.lap("calibrate")

    metrics = {"validation (T=1)": multiclass_metrics(softmax(val_logits[known]),
                                                      val_targets[known]),
               "validation": multiclass_metrics(val_probs[known], val_targets[known])}
    reliability = {"validation, T=1": top_label(softmax(val_logits[known]), val_targets[known]),
                   f"validation, T={temperature:.2f}": top_label(val_probs[known],
                                                                 val_targets[known])}
    confusions: dict[str, list[dict[str, Any]]] = {}
    for set_name, examples in data.tests.items():
        logits, targets, in_scope_rows = scored(examples, f"eval {set_name}")
        probs = softmax(logits / temperature)
        seen = in_scope_rows & (targets >= 0)
        metrics[set_name] = multiclass_metrics(probs[seen], targets[seen])
        reliability[f"{set_name} test"] = top_label(probs[seen], targets[seen])
        confusions[set_name] = top_confusions(probs[seen].argmax(axis=1), targets[seen], labels)
        if OUT_OF_SCOPE in thresholds:
            metrics[f"{set_name} out-of-scope"] = out_of_scope_metrics(
                probs, targets, in_scope_rows, thresholds[OUT_OF_SCOPE])
    run.lap("evaluate")

    goal = THRESHOLD_GOAL if thresholds else None
    manifest = run.manifest(
        task=Task.multiclass, labels=labels, metrics=metrics, data=data.fingerprints,
        calibration=Calibration(temperature=temperature, fitted_on=f"{dataset} validation "
                                "(in scope)", n=int(known.sum())),
        thresholds=thresholds, threshold_goal=goal)
    plots = [report.plot_training(history, output / "training_curves.png"),
             report.plot_probability_reliability(reliability, output / "reliability.png",
                                                 "calibrated P(top intent)")]
    summary = run.summary(manifest, data.fingerprints, data.sizes(len(train)), trainer,
                          history, plots)
    summary["calibration"] = {"temperature": temperature, "thresholds": thresholds,
                              "threshold_goal": goal}
    summary["confusions"] = confusions
    for set_name, rows in confusions.items():
        print(f"most frequent confusions on {set_name}: " + "; ".join(
            f"{r['true']} -> {r['predicted']} ({r['count']})" for r in rows[:5]))
    return run.finish(model, manifest, summary, metrics, [
        (("accuracy", "macro_f1", "ece", "in_scope_accuracy", "out_of_scope_recall", "n"),
         list(metrics))])


def top_label(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


