"""The manifest: everything the service needs to turn a request into a score.

A trained checkpoint carries a manifest with the training-side fields filled in; the ONNX export
adds the artifact fields (opset, parity, files). One schema serves both so nothing is restated.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.artifact import MANIFEST_FILE
from models.taxonomy import OUT_OF_SCOPE


class Task(StrEnum):
    reward = "reward"
    multilabel = "multilabel"
    multiclass = "multiclass"


class InputFormat(BaseModel):
    """How text becomes token ids; models/inputs.py implements exactly this."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["prompt-response", "text"] = "prompt-response"
    template: Literal["bert-pair", "roberta-pair"] = Field(
        "bert-pair",
        description="bert-pair (BERT, ELECTRA, DeBERTa): [CLS] prompt [SEP] response [SEP], a "
        "single text [CLS] text [SEP]; roberta-pair (RoBERTa): <s> prompt </s></s> response "
        "</s>, a single text <s> text </s>. token_type_ids are 0 then 1 (graphs of models "
        "without segments ignore them).",
    )
    role_labels: dict[str, str] = Field(
        default_factory=lambda: {"system": "System", "user": "Human", "assistant": "Assistant"},
        description="How chat roles are written when turns are rendered as 'Label: content'.",
    )
    max_length: int = Field(256, ge=8, le=8192, description="Tokens, special tokens included.")
    min_prompt_tokens: int = Field(
        32,
        ge=0,
        description="Prompt tokens kept even when the response alone would fill max_length; "
        "only then is the response cut (from its end).",
    )
    truncation: Literal["prompt-left"] = Field(
        "prompt-left",
        description="The response is kept whole; the prompt loses its oldest tokens first.",
    )
    lowercase: bool = Field(True, description="Informational: the tokenizer normalises case.")
    cut_marker: str = Field(
        "",
        description="Text that ends a response the window cuts, in place of its last kept "
        "tokens, so a reply cut by the window does not read as one that stops mid-sentence "
        "(which truncation contrast pairs teach is worse); empty: none.",
    )
    response_tail_tokens: int = Field(
        0,
        ge=0,
        description="Of a response the window cuts, this many of its last tokens are kept "
        "after its opening (head and tail, the middle dropped), so that how a long reply ends "
        "is read too; 0: the opening alone.",
    )

    @model_validator(mode="after")
    def _cut_fits(self) -> InputFormat:
        if self.min_prompt_tokens > self.max_length - 4:
            raise ValueError("min_prompt_tokens must leave room for a response within max_length")
        if self.response_tail_tokens > (self.max_length - 4 - self.min_prompt_tokens) // 2:
            raise ValueError("response_tail_tokens must be at most half of the response tokens "
                             "a cut response keeps (max_length - 4 - min_prompt_tokens)")
        return self


class Calibration(BaseModel):
    """Temperature scaling fitted on the validation split.

    reward: P(a over b) = sigmoid((r_a - r_b) / temperature).
    multilabel: one temperature per label; multiclass: one temperature.
    """

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(None, gt=0)
    temperatures: dict[str, float] | None = None
    fitted_on: str = Field(..., description="Which split or set the temperature was fitted on.")
    n: int = Field(..., ge=0)


class Normalisation(BaseModel):
    """Reward mean and standard deviation on a reference set, for normalised rewards."""

    model_config = ConfigDict(extra="forbid")

    mean: float
    std: float = Field(..., gt=0)
    reference: str
    n: int = Field(..., ge=1)


class OperatingCurve(BaseModel):
    """A category's precision-recall curve on the validation split: at each threshold (from
    high to low), the precision and recall of flagging probability >= threshold. A deployment
    picks its own operating point from it without re-training (`threshold_for`)."""

    model_config = ConfigDict(extra="forbid")

    thresholds: list[float]
    precision: list[float]
    recall: list[float]
    n: int = Field(..., ge=1, description="Validation texts the category is known for.")
    positives: int = Field(..., ge=0)

    @model_validator(mode="after")
    def _aligned(self) -> OperatingCurve:
        if not len(self.thresholds) == len(self.precision) == len(self.recall) > 0:
            raise ValueError("thresholds, precision and recall must be non-empty and aligned")
        return self

    def threshold_for(self, min_precision: float) -> float | None:
        """The lowest threshold (the most recall) whose validation precision is at least
        `min_precision`; None when no threshold reaches it."""
        reaching = [t for t, p in zip(self.thresholds, self.precision, strict=True)
                    if p >= min_precision]
        return min(reaching) if reaching else None


class Ensemble(BaseModel):
    """A reward model of k members scored side by side (one graph, k outputs), against
    over-optimisation: a policy tuned on one small reward model learns its blind spots, where
    members disagree. The reward is the members' mean; each answer adds their standard deviation
    and a conservative reward, mean - penalty * std or the members' minimum."""

    model_config = ConfigDict(extra="forbid")

    members: list[str] = Field(..., min_length=2, description="Where each member came from.")
    rule: Literal["mean-std", "min"] = "mean-std"
    penalty: float = Field(1.0, ge=0, description="λ in mean - λ·std (rule mean-std); the "
                           "service's ALIGNSERVE_ENSEMBLE_PENALTY overrides it.")


class DataFingerprint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    files: dict[str, str] = Field(..., description="File name -> sha256.")
    records: int = Field(..., ge=0, description="Records used after validation and filtering.")
    skipped: dict[str, int] = Field(default_factory=dict, description="Reason -> count.")


class FeedbackUsed(BaseModel):
    """The feedback a re-trained model learnt from (`alignserve retrain`)."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    records: int = Field(..., ge=0)
    fingerprint: str = Field(..., description="sha256 of the exported JSONL it was trained on.")
    first: datetime | None = Field(..., description="When the oldest record was received.")
    last: datetime | None
    trained_on: int = Field(..., ge=0, description="Records in the training part.")
    held_out: int = Field(..., ge=0, description="Records kept out to judge the challenger.")


class Lineage(BaseModel):
    """Where a re-trained model comes from, and the gate it passed."""

    model_config = ConfigDict(extra="forbid")

    parent: str = Field(..., description="name:version it continued from.")
    feedback: FeedbackUsed
    replay: float = Field(..., description="Original training records per feedback record.")
    gate: dict[str, Any] = Field(default_factory=dict, description="The rule and its figures.")


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")
    version: str
    task: Task
    labels: list[str] = Field(default_factory=list)
    input: InputFormat
    calibration: Calibration | None = None
    thresholds: dict[str, float] = Field(default_factory=dict)
    threshold_goal: str | None = None
    operating_curves: dict[str, OperatingCurve] = Field(
        default_factory=dict, description="Per category, the validation precision-recall "
        "curve that other operating points are chosen from (moderation).")
    normalisation: Normalisation | None = None
    ensemble: Ensemble | None = Field(None, description="Set for an ensemble reward model.")
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict)
    data: list[DataFingerprint] = Field(default_factory=list)
    backbone: str
    training: dict[str, Any] = Field(default_factory=dict, description="The preset and "
                                     "settings that trained it: what a re-training starts from.")
    lineage: Lineage | None = None
    # Filled by the ONNX export (training/export.py); absent on a training checkpoint.
    opset: int | None = None
    parity_max_diff: dict[str, float] = Field(default_factory=dict)
    quantisation: dict[str, dict[str, float | str]] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict, description="File name -> sha256.")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    code_version: str
    versions: dict[str, str] = Field(default_factory=dict,
                                     description="Library versions that produced the files.")

    @property
    def temperature(self) -> float | None:
        """The one temperature calibration fitted (a reward model's, a multiclass one's);
        None when uncalibrated or calibrated per label."""
        return self.calibration.temperature if self.calibration else None

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.task is Task.reward and self.labels:
            raise ValueError("a reward model has no labels")
        if self.ensemble is not None and self.task is not Task.reward:
            raise ValueError("only a reward model can be an ensemble")
        if self.task is not Task.reward and not self.labels:
            raise ValueError(f"a {self.task.value} model needs labels")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        allowed = set(self.labels) | ({OUT_OF_SCOPE} if self.task is Task.multiclass else set())
        unknown = set(self.thresholds) - allowed
        if unknown:
            raise ValueError(f"thresholds for unknown labels: {sorted(unknown)}")
        if set(self.operating_curves) - set(self.labels):
            raise ValueError("operating curves for unknown labels: "
                             f"{sorted(set(self.operating_curves) - set(self.labels))}")
        return self

    def save(self, directory: Path) -> Path:
        path = directory / MANIFEST_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{directory} has no {MANIFEST_FILE}: not a trained model "
                                    "or artifact directory")
        return cls.model_validate_json(path.read_text())


def library_versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_digests(directory: Path) -> dict[str, str]:
    """sha256 of every file under `directory` except the manifest itself."""
    return {str(p.relative_to(directory)): sha256_file(p) for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != MANIFEST_FILE}
