"""`alignserve train moderation`: what is particular to the multi-label moderation classifier.

Data: Davidson (carved 80/10/10 by text hash), TweetEval hate and offensive (their own splits)
and your JSONL; evaluated on each held-out test split and on the behavioural suites HateCheck,
XSTest and SimpleSafetyTests (never trained on). Objective: masked binary cross-entropy.
Calibration: one temperature per category, and per category the threshold with the best F1 on
validation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.calibration import sigmoid
from models.inputs import InputFormat
from models.manifest import Calibration, OperatingCurve, Task
from models.taxonomy import CATEGORIES
from training import report
from training.class_metrics import binary_metrics
from training.config import TrainConfig
from training.data.counter_speech import counter_speech
from training.data.identity import CUES, IDENTITY, VIOLENCE, balance_cue
from training.data.obfuscation import obfuscated
from training.data.text_sets import (
    CLEAN_SOURCES,
    MODERATION_SOURCES,
    SUITES,
    TextData,
    load_moderation_data,
)
from training.evaluate import evaluate_suites, moderation_scores, moderation_set_metrics
from training.modeling import ScoringModel
from training.run import Run, RunResult
from training.scoring import score
from training.texts import (
    UNKNOWN,
    EncodedTexts,
    best_f1_threshold,
    fit_category_temperatures,
    multilabel_objective,
    operating_curve,
)

THRESHOLD_GOAL = "best F1 on the validation split, per category"
Scored = dict[str, tuple[np.ndarray, np.ndarray]]  # set -> (probabilities, targets)


def train_moderation(config: TrainConfig, output: Path, data_dir: Path | None = None,
                     name: str = "moderation", preset: str | None = None, resume: bool = False,
                     stop_at: int | None = None, train_data: Sequence[Path] = (),
                     skip_invalid: bool = False, train_only: Sequence[Path] = ()
                     ) -> RunResult | None:
    run = Run.start("moderation", name, preset, config, output,
                    InputFormat(kind="text", max_length=config.max_length, min_prompt_tokens=0))
    data = load_moderation_data(data_dir, train_data, skip_invalid, exclude=config.excluded(),
                                train_only=train_only,
                                hate_also_from=config.hate_also())
    train = data.training(config.max_train_texts, config.seed, config.replay)
    balances = []
    for wanted, cue in ((config.identity_balance, IDENTITY), (config.violence_balance, VIOLENCE)):
        if wanted and config.replay is None:
            train, balance = balance_cue(train, data.train + data.train_whole, config.seed, cue)
            balances.append(balance)
    framed = counter_speech(data.train + data.train_whole, round(config.counter_speech *
                                                                  len(train)), config.seed)
    train += framed + obfuscated(train, round(config.obfuscation * len(train)), config.seed)
    model = run.new_model(len(CATEGORIES))
    trained = run.train(model, EncodedTexts.multilabel(run.encoder, train, CATEGORIES), "texts",
                        multilabel_objective(config.attention_entropy), resume, stop_at)
    if trained is None:
        return None
    trainer, history = trained

    temperatures, thresholds, metrics, scored = calibrate(model, run, data)
    curves = operating_curves(*scored["validation"])
    run.lap("calibrate")
    for set_name, examples in data.tests.items():
        scored[set_name] = moderation_scores(model, run.encoder, examples, temperatures,
                                             config.eval_batch_tokens, f"eval {set_name}")
    for set_name, (probs, targets) in scored.items():
        examples = data.validation if set_name == "validation" else data.tests[set_name]
        metrics.update(moderation_set_metrics(set_name, examples, probs, targets, thresholds))
    metrics.update(evaluate_suites(data.tests, {k: v[0] for k, v in scored.items()
                                                if k in SUITES}, thresholds))
    run.lap("evaluate")

    manifest = run.manifest(
        task=Task.multilabel, labels=list(CATEGORIES), metrics=metrics, data=data.fingerprints,
        calibration=Calibration(temperatures=temperatures, fitted_on="moderation validation "
                                "splits (known labels only)", n=len(data.validation)),
        thresholds=thresholds, threshold_goal=THRESHOLD_GOAL, operating_curves=curves)
    summary = run.summary(manifest, data.fingerprints, data.sizes(len(train)), trainer,
                          history, write_plots(output, history, scored))
    summary["calibration"] = {"temperatures": temperatures, "thresholds": thresholds,
                              "threshold_goal": THRESHOLD_GOAL}
    # texts by where they came from, for those that say (clean requests' origins, framed ones)
    summary["training_mix"] = {"texts": len(train),
                               **Counter(e.group for e in train if e.group)}
    for balance in balances:
        summary["training_mix"][balance.cue.mix_key] = balance.record()
    sets = ("validation (T=1)", "validation", *MODERATION_SOURCES, *CLEAN_SOURCES,
            *(p.stem for p in train_data))
    return run.finish(model, manifest, summary, metrics, [
        (("auprc", "roc_auc", "precision", "recall", "f1", "ece", "flag_rate", "n"),
         [f"{s}/{c}" for s in sets for c in (*CATEGORIES, "clean", "any")]),
        (("accuracy", "hateful_recall", "non_hateful_flag_rate", "over_flagging_rate",
          "unsafe_flag_rate", "catch_rate", "n"), SUITES),
        *(((f"hate_flag_rate_{cue.has}", f"n_{cue.has}", f"hate_flag_rate_{cue.lacks}",
            f"n_{cue.lacks}"), [f"{s}/{entry}" for s in ("validation", *MODERATION_SOURCES,
                                                          *CLEAN_SOURCES, *SUITES)])
          for entry, cue in CUES.items())])


def calibrate(model: ScoringModel, run: Run, data: TextData
              ) -> tuple[dict[str, float], dict[str, float], dict[str, dict[str, float]], Scored]:
    """Per category: a temperature, then the best-F1 threshold on calibrated validation
    probabilities; the uncalibrated validation metrics go in the record too."""
    validation = EncodedTexts.multilabel(run.encoder, data.validation, CATEGORIES)
    raw = score(model, validation.items, run.config.eval_batch_tokens, run.encoder.pad_id,
                "calibrate")
    targets = validation.targets
    temperatures = fit_category_temperatures(raw, targets, CATEGORIES)
    probs = sigmoid(raw / np.array([temperatures[c] for c in CATEGORIES]))
    thresholds, metrics = {}, {}
    for k, category in enumerate(CATEGORIES):
        known = targets[:, k] != UNKNOWN
        thresholds[category] = best_f1_threshold(probs[known, k], targets[known, k])
        metrics[f"validation (T=1)/{category}"] = binary_metrics(
            sigmoid(raw[known, k]), targets[known, k], thresholds[category])
    return temperatures, thresholds, metrics, {"validation": (probs, targets)}


def operating_curves(probs: np.ndarray, targets: np.ndarray) -> dict[str, OperatingCurve]:
    """Each category's validation precision-recall curve, for the manifest: a deployment picks
    another operating point from it (e.g. precision >= 0.9) without re-training."""
    curves = {}
    for k, category in enumerate(CATEGORIES):
        known = targets[:, k] != UNKNOWN
        if known.any():
            curves[category] = operating_curve(probs[known, k], targets[known, k])
    return curves


def write_plots(output: Path, history: list[dict[str, float]], scored: Scored) -> list[Path]:
    def curves(sets: Sequence[str], suffix: str = "") -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {f"{c}, {s}{suffix}": (p[known, k], t[known, k])
                for s in sets for (p, t) in [scored[s]] for k, c in enumerate(CATEGORIES)
                for known in [t[:, k] != UNKNOWN] if known.any()}

    return [report.plot_training(history, output / "training_curves.png"),
            report.plot_probability_reliability(curves(("validation", *MODERATION_SOURCES)),
                                                output / "reliability.png",
                                                "calibrated P(category)"),
            report.plot_pr_curves(curves(MODERATION_SOURCES, " test"), output / "pr_curves.png")]
