"""Bring your own model: a local Hugging Face `*ForSequenceClassification` directory, served
like a trained one.

    alignserve import DIR --task reward|moderation|intent --name NAME

The families whose graphs and tokenizers this is tested on are FAMILIES (config.json's
model_type): BERT, RoBERTa, DeBERTa-v2 (DeBERTa-v3 models are this type) and ELECTRA. Nothing is
downloaded: DIR must hold config.json, the weights and a tokenizer (tokenizer.json, or files a
fast tokenizer is built from).

What an import records in the manifest, so the service reads the model as it was meant:
- the input format: a reward model reads (prompt, response) as the tokenizer's own pair
  (FAMILIES gives the template: `[CLS] prompt [SEP] response [SEP]` or RoBERTa's
  `<s> prompt </s></s> response </s>`), with a chat history rendered as "Human: ..." /
  "Assistant: ..." lines and the prompt cut from its oldest tokens; a classifier reads a single
  text. `--max-length` defaults to what the model's positions allow, at most 512;
- the labels: config.json's id2label. moderation: one sigmoid per label (multi-label); intent:
  a softmax over the labels; reward: the model's single logit;
- the calibration: a reward model's temperature is fitted, and its normalisation measured, on
  the pooled preference validation pairs (the same data a trained one uses). A classifier's
  labels are its own, with no held-out set here to calibrate them on: temperature 1 and
  threshold 0.5, said so in the manifest.

Then the checkpoint (model/: hf/, tokenizer.json, manifest.json) goes through the exporter's
parity gate and int8 check, and the artifact into the model store.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from models.artifact import TOKENIZER_FILE
from models.inputs import PairEncoder
from models.manifest import (
    Calibration,
    InputFormat,
    Manifest,
    Task,
    file_digests,
    library_versions,
)
from training.modeling import IMPORTED_DIR, ImportedModel, export_tokenizer
from training.run import code_version

FAMILIES = {"bert": "bert-pair", "electra": "bert-pair", "deberta-v2": "bert-pair",
            "roberta": "roberta-pair"}
TASKS = {"reward": Task.reward, "moderation": Task.multilabel, "intent": Task.multiclass}
MAX_LENGTH = 512


class NotImportable(ValueError):
    """The directory cannot be imported; the message says why and what would fix it."""


@dataclass(frozen=True)
class Source:
    directory: Path
    model_type: str
    labels: list[str]
    max_positions: int


def read_source(directory: Path, task: str) -> Source:
    """What config.json says, checked against the task before any weights are read."""
    from transformers import AutoConfig

    if not (directory / "config.json").is_file():
        raise NotImportable(f"{directory} has no config.json: not a Hugging Face model directory")
    config = AutoConfig.from_pretrained(directory)
    if config.model_type not in FAMILIES:
        raise NotImportable(f"{directory} is a {config.model_type!r} model; import reads "
                           f"{', '.join(sorted(FAMILIES))}")
    architectures = config.architectures or []
    if architectures and not any(a.endswith("ForSequenceClassification")
                                 for a in architectures):
        raise NotImportable(f"{directory} is a {architectures[0]}, not a "
                           "*ForSequenceClassification model")
    labels = [str(config.id2label[i]) for i in range(config.num_labels)]
    if task == "reward" and config.num_labels != 1:
        raise NotImportable(f"a reward model has one output; {directory} has "
                           f"{config.num_labels} ({labels})")
    if task != "reward" and config.num_labels < 2:
        raise NotImportable(f"a {task} classifier needs at least two labels; {directory} has "
                           f"{config.num_labels}")
    if task == "intent" and getattr(config, "problem_type", None) == "multi_label_classification":
        raise NotImportable(f"{directory} is multi-label: import it with --task moderation")
    positions = int(getattr(config, "max_position_embeddings", MAX_LENGTH))
    # RoBERTa's positions start after the padding index: 514 positions hold 512 tokens.
    if config.model_type == "roberta":
        positions -= int(config.pad_token_id) + 1
    return Source(directory, config.model_type, labels, positions)


def write_checkpoint(source: Source, task: str, name: str, output: Path, max_length: int | None,
                     data_dir: Path | None, say: Callable[[str], None] = print) -> Path:
    """model/ under `output`: the model (hf/), tokenizer.json and the manifest; returns it."""
    length = min(max_length or MAX_LENGTH, source.max_positions)
    if max_length and max_length > source.max_positions:
        raise NotImportable(f"--max-length {max_length} exceeds the model's "
                           f"{source.max_positions} positions")
    model_dir = output / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir.mkdir(parents=True)
    say(f"import {name}: reading {source.directory} ({source.model_type})")
    model = ImportedModel.load(source.directory)
    model.model.save_pretrained(model_dir / IMPORTED_DIR)
    try:
        export_tokenizer(source.directory, model_dir)
    except (OSError, ValueError) as exc:
        raise NotImportable(f"{source.directory} has no usable tokenizer (tokenizer.json or "
                           f"the files a fast tokenizer is built from): {exc}") from exc
    fmt = InputFormat(kind="prompt-response" if task == "reward" else "text",
                      template=FAMILIES[source.model_type],
                      max_length=length, min_prompt_tokens=min(32, length // 4))
    encoder = PairEncoder.from_file(model_dir / TOKENIZER_FILE, fmt)  # checks the specials
    fields: dict[str, object] = {}
    if task == "reward":
        fields = reward_calibration(model, encoder, data_dir, say)
    else:
        fields = {"thresholds": dict.fromkeys(source.labels, 0.5),
                  "threshold_goal": "0.5 on every label: imported, with no validation data "
                                    "for its labels to choose thresholds on",
                  "calibration": Calibration(
                      temperature=1.0 if task == "intent" else None,
                      temperatures=dict.fromkeys(source.labels, 1.0) if task != "intent"
                      else None, fitted_on="none: imported as trained (temperature 1)", n=0)}
    manifest = Manifest(
        name=name, version=datetime.now(UTC).strftime("%Y%m%d-%H%M%S"), task=TASKS[task],
        labels=[] if task == "reward" else source.labels, input=fmt,
        backbone=f"imported {source.model_type}",
        training={"imported": {"from": str(source.directory.resolve()),
                               "model_type": source.model_type,
                               "files": file_digests(source.directory)}},
        code_version=code_version(),
        versions=library_versions("torch", "transformers", "tokenizers"),
        **fields)
    manifest.save(model_dir)
    return model_dir


def reward_calibration(model: ImportedModel, encoder: PairEncoder, data_dir: Path | None,
                       say: Callable[[str], None]) -> dict[str, object]:
    """Temperature, normalisation and pairwise accuracy on the pooled validation pairs, as a
    trained reward model gets them (training/reward.py's `calibrate`)."""
    from training.data.reward_data import load_reward_data
    from training.reward import calibrate

    validation = load_reward_data(data_dir, other_sources=False).splits["validation"]
    say(f"import: calibrating on {len(validation):,} preference validation pairs")
    calibrated = calibrate(model, encoder, validation, max_tokens=4096)
    margins = calibrated.margins
    return {"calibration": Calibration(temperature=calibrated.temperature,
                                       fitted_on="pooled preference validation", n=len(margins)),
            "normalisation": calibrated.normalisation,
            "metrics": {"validation": {"accuracy": float((margins > 0).mean()),
                                       "n": float(len(margins))}}}
