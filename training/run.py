"""The run skeleton every task's training shares: set up, train, build the manifest, write the
report and the summary. A task module (reward.py, moderation.py, intent.py) says only what is
particular to it: its data, objective, calibration and metrics.

Everything a run writes goes under its output directory:
    model/            encoder/, head.safetensors, tokenizer.json, manifest.json
    checkpoints/      trainer_state.pt (for --resume)
    report.json, and the task's plots
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.inputs import PairEncoder
from models.manifest import DataFingerprint, InputFormat, Manifest, file_digests, library_versions
from training import report
from training.config import TrainConfig
from training.modeling import ScoringModel, export_tokenizer, resolve_backbone, set_dropout
from training.trainer import Batchable, Objective, Trainer, run_training


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


def finite(metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Without the undefined figures (a precision with nothing flagged is NaN): JSON has no NaN."""
    return {name: {k: v for k, v in values.items() if v == v} for name, values in
            metrics.items()}


@dataclass
class RunResult:
    model_dir: Path
    report: dict[str, Any]


@dataclass
class Run:
    """One training run of one task, from set-up to the written report."""

    task: str
    name: str
    preset: str | None
    config: TrainConfig
    output: Path
    backbone: Path
    encoder: PairEncoder
    clock: dict[str, float] = field(default_factory=dict)

    @classmethod
    def start(cls, task: str, name: str, preset: str | None, config: TrainConfig,
              output: Path, fmt: InputFormat) -> Run:
        started = time.perf_counter()
        if config.threads:
            torch.set_num_threads(config.threads)
        backbone = resolve_backbone(config.backbone)
        (output / "model").mkdir(parents=True, exist_ok=True)
        # Continuing from a trained model: its tokenizer, which may differ from the backbone's.
        source = Path(config.init_from) if config.init_from else backbone
        encoder = PairEncoder.from_file(export_tokenizer(source, output / "model"), fmt)
        return cls(task, name, preset, config, output, backbone, encoder, {"start": started})

    @property
    def model_dir(self) -> Path:
        return self.output / "model"

    def lap(self, stage: str) -> None:
        """Mark the end of a stage; the report lists each stage's seconds."""
        self.clock[stage] = time.perf_counter()

    def new_model(self, num_outputs: int = 1) -> ScoringModel:
        torch.manual_seed(self.config.seed)  # the head's initialisation
        if self.config.init_from:
            model = ScoringModel.load(Path(self.config.init_from)).train()
            outputs = model.head.out_features
            if outputs != num_outputs:
                raise ValueError(f"{self.config.init_from} has {outputs} outputs; this run "
                                 f"needs {num_outputs} (its labels differ)")
            if self.config.pool_tokens not in (None, model.pool):
                raise ValueError(f"{self.config.init_from} pools its {model.pool} tokens; "
                                 f"it cannot continue with pool_tokens "
                                 f"{self.config.pool_tokens!r}")
        else:
            model = ScoringModel.from_backbone(self.backbone, num_outputs,
                                               self.config.pool_tokens or "response")
        if self.config.dropout is not None:
            set_dropout(model.encoder, self.config.dropout)
        return model

    def train(self, model: ScoringModel, data: Batchable, unit: str, objective: Objective,
              resume: bool, stop_at: int | None
              ) -> tuple[Trainer, list[dict[str, float]]] | None:
        trained = run_training(model, data, unit, objective, self.config, self.output,
                               self.encoder.pad_id, resume, stop_at)
        self.lap("train")
        return trained

    def manifest(self, **fields: Any) -> Manifest:
        """The fields every task's manifest shares, plus the task's own."""
        return Manifest(name=self.name, version=datetime.now(UTC).strftime("%Y%m%d-%H%M%S"),
                        input=self.encoder.format, backbone=str(self.config.backbone),
                        training={"preset": self.preset, "config": self.config.to_dict()},
                        code_version=code_version(),
                        versions=library_versions("torch", "transformers", "tokenizers"),
                        **fields)

    def summary(self, manifest: Manifest, data: Sequence[DataFingerprint],
                split: dict[str, Any], trainer: Trainer, history: list[dict[str, float]],
                plots: Sequence[Path]) -> dict[str, Any]:
        tail = history[-50:]
        return {
            "task": self.task, "name": self.name, "version": manifest.version,
            "preset": self.preset, "config": self.config.to_dict(),
            "data": [f.model_dump() for f in data], "split": split,
            "training": {"steps": trainer.total_steps,
                         "final_loss": float(np.mean([h["loss"] for h in tail])),
                         "final_accuracy": float(np.mean([h["accuracy"] for h in tail]))},
            "plots": [p.name for p in plots],
        }

    def finish(self, model: ScoringModel, manifest: Manifest, summary: dict[str, Any],
               metrics: dict[str, dict[str, float]],
               tables: Sequence[tuple[Sequence[str] | None, Sequence[str]]]) -> RunResult:
        """Save the model and its manifest, write report.json and print the summary tables:
        (columns or None for the default ones, rows); rows absent from `metrics` are left out."""
        model.save(self.model_dir)
        manifest = manifest.model_copy(update={"files": file_digests(self.model_dir),
                                               "metrics": finite(manifest.metrics)})
        Manifest.model_validate(manifest.model_dump()).save(self.model_dir)
        self.lap("save")
        stages = list(self.clock)
        summary["timings"] = {f"{stage}_s": self.clock[stage] - self.clock[previous]
                              for previous, stage in pairwise(stages)}
        summary["timings"]["total_s"] = time.perf_counter() - self.clock["start"]
        summary["model_dir"] = str(self.model_dir)
        summary["eval"] = finite(metrics)
        report.write_json(self.output / "report.json", summary)
        for columns, rows in tables:
            shown = {row: metrics[row] for row in rows if row in metrics}
            if shown:
                print(report.summary_table(shown, columns) if columns
                      else report.summary_table(shown))
        print(f"{summary['timings']['total_s']:.0f} s in all; model in {self.model_dir}; report "
              f"in {self.output / 'report.json'}")
        return RunResult(self.model_dir, summary)
