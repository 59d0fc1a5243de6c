"""`alignserve train reward`: data -> split -> Bradley-Terry training -> calibration ->
evaluation on every set -> model directory with manifest, report.json, plots and a summary.

Everything goes under the output directory:
    model/            encoder/, head.safetensors, tokenizer.json, manifest.json
    checkpoints/      trainer_state.pt (for --resume)
    report.json, training_curves.png, reliability.png, reward_distributions.png
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.inputs import PairEncoder
from models.manifest import (
    Calibration,
    InputFormat,
    Manifest,
    Normalisation,
    Task,
    file_digests,
    library_versions,
)
from training import behaviour, report
from training.calibration import fit_temperature
from training.config import TrainConfig
from training.data.contrast import KINDS as CONTRAST_KINDS
from training.data.contrast import contrast_pairs
from training.data.records import PreferencePair
from training.data.reward_data import (
    HH,
    POOLED,
    SOURCE_WEIGHTS,
    load_reward_data,
    source_of,
    weighted,
)
from training.evaluate import SetResult, evaluate_sets
from training.metrics import pairwise_metrics
from training.modeling import ScoringModel, export_tokenizer, resolve_backbone
from training.reward import EncodedPairs, RewardObjective, score_pairs
from training.trainer import run_training, sample

SPLIT_RULE = ("each pooled source carved 80/10/10 into train/validation/test by a sha256 of its "
              "group (hh-rlhf and Open-Assistant: the first user turn; the others: the "
              "question), so no conversation or question lands in two splits; HHH and "
              "UKPConvArg are held out whole")


def code_version() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sha = "unknown"
    try:
        release = version("alignserve")
    except PackageNotFoundError:  # run from a source tree that was never installed
        release = "0+unknown"
    return f"{release}+g{sha}"


@dataclass
class RunResult:
    model_dir: Path
    report: dict[str, Any]


@dataclass
class Calibrated:
    margins: np.ndarray
    temperature: float
    normalisation: Normalisation


def train_reward(config: TrainConfig, output: Path, data_dir: Path | None = None,
                 name: str = "reward", preset: str | None = None, resume: bool = False,
                 stop_at: int | None = None, train_data: Sequence[Path] = (),
                 skip_invalid: bool = False) -> RunResult | None:
    """Run everything; returns None when stopped early (at `stop_at`, or by Ctrl-C or SIGTERM)
    with a checkpoint to --resume from."""
    clock = {"start": time.perf_counter()}
    if config.threads:
        torch.set_num_threads(config.threads)
    backbone = resolve_backbone(config.backbone)
    model_dir = output / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    fmt = InputFormat(max_length=config.max_length, min_prompt_tokens=config.min_prompt_tokens)
    encoder = PairEncoder.from_file(export_tokenizer(backbone, model_dir), fmt)

    data = load_reward_data(data_dir, train_data, skip_invalid)
    train_pairs = training_pairs(data.splits["train"], config)
    encoded = EncodedPairs.build(encoder, train_pairs)
    clock["load"] = time.perf_counter()

    torch.manual_seed(config.seed)  # the head's initialisation
    model = ScoringModel.from_backbone(backbone)
    objective = RewardObjective(config.use_margin, config.center_rewards, config.length_term)
    trained = run_training(model, encoded, "pairs", objective, config, output, encoder.pad_id,
                           resume, stop_at)
    if trained is None:
        return None
    trainer, history = trained
    clock["train"] = time.perf_counter()

    calibrated = calibrate(model, encoder, data.splits["validation"], config.eval_batch_tokens)
    clock["calibrate"] = time.perf_counter()
    results = evaluate_sets(model, encoder, data.eval_sets, calibrated.temperature,
                            config.eval_batch_tokens)
    hh_validation = np.array([source_of(p) == HH for p in data.splits["validation"]])
    metrics = {"validation (T=1)": pairwise_metrics(calibrated.margins, 1.0),
               "validation": pairwise_metrics(calibrated.margins, calibrated.temperature),
               "validation/hh-rlhf": pairwise_metrics(calibrated.margins[hh_validation],
                                                      calibrated.temperature),
               **{k: r.metrics for k, r in results.items()}}
    clock["evaluate"] = time.perf_counter()

    model.save(model_dir)
    manifest = Manifest(
        name=name, version=datetime.now(UTC).strftime("%Y%m%d-%H%M%S"), task=Task.reward,
        input=fmt,
        calibration=Calibration(temperature=calibrated.temperature,
                                fitted_on="pooled validation split", n=len(calibrated.margins)),
        normalisation=calibrated.normalisation, metrics=metrics, data=data.fingerprints,
        backbone=str(config.backbone), files=file_digests(model_dir), code_version=code_version(),
        versions=library_versions("torch", "transformers", "tokenizers"))
    manifest.save(model_dir)

    plots = write_plots(output, history, calibrated, results["hh-rlhf"])
    tail = history[-50:]
    summary: dict[str, Any] = {
        "task": "reward", "name": name, "version": manifest.version, "preset": preset,
        "config": config.to_dict(), "data": [f.model_dump() for f in data.fingerprints],
        "split": {"rule": SPLIT_RULE, **{k: len(v) for k, v in data.splits.items()},
                  "train_used": len(train_pairs)},
        "training_mix": {"weights": {k: {"weight": w, "why": why}
                                     for k, (w, why) in SOURCE_WEIGHTS.items()},
                         "pairs_by_source": dict(Counter(p.subset if p.subset.startswith(
                             "contrast/") else source_of(p) for p in train_pairs))},
        "length_weight": float(objective.length_weight.detach()),
        "behaviour": behaviour_summary(metrics),
        "training": {"steps": trainer.total_steps,
                     "final_loss": float(np.mean([h["loss"] for h in tail])),
                     "final_accuracy": float(np.mean([h["accuracy"] for h in tail]))},
        "calibration": {"temperature": calibrated.temperature,
                        **calibrated.normalisation.model_dump()},
        "timings": {f"{stage}_s": clock[stage] - clock[previous] for previous, stage in
                    zip(list(clock), list(clock)[1:], strict=False)},
        "eval": metrics, "plots": [p.name for p in plots], "model_dir": str(model_dir),
    }
    summary["timings"]["total_s"] = time.perf_counter() - clock["start"]
    report.write_json(output / "report.json", summary)
    print(report.summary_table(metrics))
    print(f"temperature {calibrated.temperature:.3f}; {summary['timings']['total_s']:.0f} s in "
          f"all; model in {model_dir}; report in {output / 'report.json'}")
    return RunResult(model_dir, summary)


def calibrate(model: ScoringModel, encoder: PairEncoder, pairs: list[PreferencePair],
              max_tokens: int) -> Calibrated:
    """Temperature and reward normalisation, both from the validation split."""
    chosen, rejected = score_pairs(model, encoder, pairs, max_tokens, desc="calibrate")
    rewards = np.concatenate([chosen, rejected])
    return Calibrated(
        margins=chosen - rejected, temperature=fit_temperature(chosen - rejected),
        normalisation=Normalisation(
            mean=float(rewards.mean()), std=float(rewards.std()) or 1.0,
            reference="pooled validation responses (chosen and rejected)", n=len(rewards)))


def training_pairs(train: list[PreferencePair], config: TrainConfig) -> list[PreferencePair]:
    """The weighted pool, the label-free contrast pairs built from it, then at most
    `max_train_pairs` of all of them (sampled with the seed). Without `pool`, only hh-rlhf and
    the user's own files are trained on (every source is still evaluated)."""
    if not config.pool:
        train = [p for p in train if source_of(p) not in POOLED]
    real = weighted(train, config.seed)
    contrast = contrast_pairs(real, {kind: getattr(config, kind) for kind in CONTRAST_KINDS},
                              config.seed)
    return sample(real + contrast, config.max_train_pairs, config.seed)


def behaviour_summary(metrics: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The suite's accuracy overall and per functionality, against its targets."""
    prefix = f"{behaviour.SET_NAME}/"
    each = {k[len(prefix):]: v["accuracy"] for k, v in metrics.items() if k.startswith(prefix)}
    overall = metrics.get(behaviour.SET_NAME, {}).get("accuracy", float("nan"))
    return {"overall": overall, "functionalities": each,
            "passes": bool(overall >= behaviour.TARGET_OVERALL
                           and all(v >= behaviour.TARGET_EACH for v in each.values()))}


def write_plots(output: Path, history: list[dict[str, float]], calibrated: Calibrated,
                test: SetResult) -> list[Path]:
    t = calibrated.temperature
    return [
        report.plot_training(history, output / "training_curves.png"),
        report.plot_reliability({"validation, T=1": (calibrated.margins, 1.0),
                                 f"validation, T={t:.2f}": (calibrated.margins, t),
                                 f"hh-rlhf test, T={t:.2f}": (test.chosen - test.rejected, t)},
                                output / "reliability.png"),
        report.plot_reward_distributions(test.chosen, test.rejected, "hh-rlhf test",
                                         output / "reward_distributions.png"),
    ]
