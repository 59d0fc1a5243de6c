"""An ensemble reward model: k trained members (k seeds of one recipe) served as one model.

    alignserve ensemble --members runs/r0/model runs/r1/model runs/r2/model --output runs/ens
    alignserve train reward --ensemble 3 --output runs/ens     (seeds s .. s+2, then this)

A policy optimised against one small reward model learns its blind spots; where members
disagree, their spread says so (the reward-model-ensemble literature: Coste et al. 2024, Eisenstein
et al. 2024). The members must read the same input (format and tokenizer). The ensemble's
model/ holds members/K (each member's encoder and head), the tokenizer and one manifest: its
reward is the members' mean, whose temperature and normalisation are fitted on the pooled
validation split as a single model's are, and every evaluation set is scored again. Each answer
of the service adds the members' standard deviation and a conservative reward (mean - λ·std, or
the minimum). Export, store, metrics and swaps treat it as one versioned model: one graph with
k outputs, so one engine call scores every member.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.artifact import TOKENIZER_FILE
from models.inputs import PairEncoder
from models.manifest import Calibration, Ensemble, Manifest, Task, library_versions, sha256_file
from training.modeling import EnsembleModel, ScoringModel
from training.run import code_version, finite

# What the report puts side by side, ensemble and members.
HEADLINE = ("validation", "hh-rlhf", "behaviour", "hhh", "ukpconvarg", "truthfulqa",
            "contrast (validation)")


def check_members(members: Sequence[Path]) -> list[Manifest]:
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two members")
    manifests = [Manifest.load(m) for m in members]
    for path, manifest in zip(members, manifests, strict=True):
        if manifest.task is not Task.reward or manifest.ensemble is not None:
            raise ValueError(f"{path} is not a single trained reward model")
        if not (path / "head.safetensors").exists():
            raise ValueError(f"{path} is not a trained model directory (no head.safetensors)")
        if manifest.input != manifests[0].input:
            raise ValueError(f"{path} reads its input differently from {members[0]}: "
                             f"{manifest.input} vs {manifests[0].input}")
        if sha256_file(path / TOKENIZER_FILE) != sha256_file(members[0] / TOKENIZER_FILE):
            raise ValueError(f"{path} has another tokenizer than {members[0]}")
    return manifests


def build_ensemble(members: Sequence[Path], output: Path, name: str = "reward",
                   rule: str = "mean-std", penalty: float = 1.0,
                   data_dir: Path | None = None, max_tokens: int = 4096) -> Path:
    """output/model (the ensemble checkpoint) and output/report.json; returns the model dir."""
    from training.data.reward_data import load_reward_data
    from training.evaluate import evaluate_sets
    from training.reward import CONTRAST_CHECK, calibrate, contrast_check, validation_metrics

    manifests = check_members(members)
    model = EnsembleModel([ScoringModel.load(m) for m in members])
    model_dir = output / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    model.save(model_dir)
    shutil.copy(members[0] / TOKENIZER_FILE, model_dir / TOKENIZER_FILE)
    encoder = PairEncoder.from_file(model_dir / TOKENIZER_FILE, manifests[0].input)

    data = load_reward_data(data_dir)
    print(f"ensemble of {len(members)}: calibrating and evaluating the members' mean", flush=True)
    calibrated = calibrate(model, encoder, data.splits["validation"], max_tokens)
    sets = {**data.eval_sets, CONTRAST_CHECK: contrast_check(data)}
    results = evaluate_sets(model, encoder, sets, calibrated.temperature, max_tokens)
    metrics = finite({**validation_metrics(data, calibrated),
                      **{k: r.metrics for k, r in results.items()}})
    manifest = Manifest(
        name=name, version=datetime.now(UTC).strftime("%Y%m%d-%H%M%S"), task=Task.reward,
        input=manifests[0].input,
        calibration=Calibration(temperature=calibrated.temperature,
                                fitted_on="pooled validation split (members' mean)",
                                n=len(calibrated.margins)),
        normalisation=calibrated.normalisation,
        ensemble=Ensemble(members=[f"{m.name}:{m.version} ({path})"
                                   for m, path in zip(manifests, members, strict=True)],
                          rule=rule, penalty=penalty),
        metrics=metrics, data=manifests[0].data, backbone=manifests[0].backbone,
        training={"ensemble_of": [m.training for m in manifests]},
        code_version=code_version(), versions=library_versions("torch", "transformers"))
    manifest.save(model_dir)
    report = comparison(manifests, metrics)
    (output / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    for line in summary_lines(report):
        print(line)
    return model_dir


def comparison(members: Sequence[Manifest], ensemble: dict[str, dict[str, float]]
               ) -> dict[str, Any]:
    """Accuracy and ECE of the ensemble beside each member's, on the headline sets."""
    def pick(metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        return {s: {k: metrics[s][k] for k in ("accuracy", "ece", "log_loss") if k in metrics[s]}
                for s in HEADLINE if s in metrics}

    return {"ensemble": pick(ensemble),
            "members": {f"{m.name}:{m.version}": pick(m.metrics) for m in members}}


def summary_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"{'set':24s} {'ensemble':>16s}  members (accuracy / ECE)"]
    for name, values in report["ensemble"].items():
        members = [m.get(name, {}) for m in report["members"].values()]
        lines.append(f"{name:24s} {values['accuracy']:7.1%} / {values.get('ece', 0):.3f}  " +
                     ", ".join(f"{m['accuracy']:.1%} / {m.get('ece', 0):.3f}" for m in members
                               if "accuracy" in m))
    return lines
