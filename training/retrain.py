"""`alignserve retrain reward|moderation|intent --from TAG`: learn from production feedback.

1. The feedback of the task's kind (optionally --since/--until) is exported from the store to
   feedback.jsonl and split by a salted hash of its conversation or text: 80% to train on,
   20% held out to judge with (a conversation never lands on both sides).
2. The challenger continues from the stored model's own weights (the artifact keeps them in
   weights/) with its recorded training settings at half its learning rate, on every training
   feedback record plus `replay` (default 2) times as many records sampled from the original
   training data, so that it does not forget; the usual calibration and evaluation follow
   (training/reward.py and the others).
3. The gate (training/gate.py) scores champion and challenger on the same held-out examples:
   the original test sets and the held-out feedback; gate.json and gate.png say what it decided
   and why.
4. Promoted: exported through the parity gate and saved to the store as a new version whose
   manifest names its parent, the feedback (count, fingerprint, time range) and the gate's
   figures. Refused: nothing enters the store; the report says why.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from feedback.records import Kind, export_line
from feedback.store import FeedbackStore
from models import store
from models.artifact import TOKENIZER_FILE, WEIGHTS_DIR
from models.inputs import PairEncoder
from models.manifest import FeedbackUsed, Lineage, Manifest, Task, sha256_file
from training import gate, report
from training.config import TASK_PRESETS, TrainConfig
from training.modeling import ScoringModel

TASKS: dict[str, tuple[Task, Kind]] = {"reward": (Task.reward, "preference"),
                                       "moderation": (Task.multilabel, "moderation"),
                                       "intent": (Task.multiclass, "intent")}
HELD_OUT_SHARE = 0.2
MIN_RECORDS = 20
# Continued training forgets what it is not shown: twice as many replayed original records as
# feedback records, at half the parent's learning rate (it starts from a trained model, not a
# fresh head). Chosen once, after a first run at 1x and the parent's rate lost 16 points on
# UKPConvArg and was refused by the gate (docs/measurements.md, "The feedback loop on real data").
REPLAY = 2.0
LR_FACTOR = 0.5


class RetrainError(ValueError):
    pass


@dataclass(frozen=True)
class Retrained:
    decision: gate.Decision
    challenger: Path  # the trained model directory
    tag: str | None  # the new store version when promoted


def group_of(line: dict[str, Any]) -> str:
    """What must not land on both sides of the split: the conversation's first user turn, or
    the text."""
    if "text" in line:
        text = str(line["text"])
    elif line.get("prompt") is not None:
        text = str(line["prompt"])
    else:
        text = next((m["content"] for m in line["messages"] if m["role"] == "user"), "")
    return " ".join(text.lower().split())


def held_out(group: str, share: float = HELD_OUT_SHARE) -> bool:
    # Salted: the catalogued sets split on the same keys, and feedback that repeats their
    # training records would otherwise all fall on one side.
    digest = hashlib.sha256(f"feedback/{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def write_jsonl(path: Path, lines: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    return path


def export_feedback(feedback: FeedbackStore, kind: Kind, output: Path,
                    since: datetime | None, until: datetime | None,
                    min_records: int = MIN_RECORDS) -> tuple[FeedbackUsed, Path, Path]:
    stored = list(feedback.select(kind, since, until))
    if len(stored) < min_records:
        raise RetrainError(f"{len(stored)} {kind} feedback records in {feedback.describe()}; "
                           f"re-training needs at least {min_records}")
    lines = [export_line(s.record) for s in stored]
    everything = write_jsonl(output / "feedback.jsonl", lines)
    train = [line for line in lines if not held_out(group_of(line))]
    kept = [line for line in lines if held_out(group_of(line))]
    if not train or not kept:
        raise RetrainError(f"the {len(lines)} feedback records come from too few conversations "
                           "or texts to hold some out")
    used = FeedbackUsed(kind=kind, records=len(lines), fingerprint=sha256_file(everything),
                        first=stored[0].received_at, last=stored[-1].received_at,
                        trained_on=len(train), held_out=len(kept))
    return (used, write_jsonl(output / "feedback-train.jsonl", train),
            write_jsonl(output / "feedback-held-out.jsonl", kept))


def continue_config(parent: Manifest, weights: Path, task: str,
                    overrides: dict[str, Any]) -> TrainConfig:
    """The parent's own training settings, continued from its weights, with `overrides`."""
    recorded = parent.training.get("config")
    base = TrainConfig(**recorded) if recorded else TASK_PRESETS[task]["default"]
    lr = overrides.get("lr") or base.lr * LR_FACTOR
    settings = {"init_from": str(weights), "backbone": str(weights / "encoder"),
                "replay": REPLAY, "lr": lr, "head_lr": lr}
    return base.with_overrides(**{**settings, **{k: v for k, v in overrides.items()
                                                 if v is not None}})


# --- judging: both models on the same held-out examples ---------------------------------------

@dataclass(frozen=True)
class Judged:
    metric: str
    feedback: gate.Scored  # the held-out feedback
    original: dict[str, gate.Scored]  # gated: test splits (and subsets), behavioural suites
    pool: list[str]  # the names in `original` pooled for the rule's clause 2
    shown: dict[str, gate.Scored]  # held-out sources: reported, not gated


# (champion weights, challenger, held-out feedback file, data dir, parent manifest) -> Judged
Judge = Callable[[Path, Path, Path, Path | None, Manifest], Judged]


def _models(champion: Path, challenger: Path) -> tuple[PairEncoder, ScoringModel, ScoringModel]:
    manifest = Manifest.load(challenger)
    encoder = PairEncoder.from_file(challenger / TOKENIZER_FILE, manifest.input)
    return encoder, ScoringModel.load(champion), ScoringModel.load(challenger)


def accuracy(correct: np.ndarray, rows: np.ndarray) -> float:
    return float(correct[rows].mean())


def judge_reward(champion: Path, challenger: Path, kept: Path, data_dir: Path | None,
                 parent: Manifest) -> Judged:
    """Every evaluation set of a training run. Gated: the pooled sources' test splits (pooled
    for clause 2) and the behavioural suite; shown: the held-out sources."""
    from training.data.preference import load_generic
    from training.data.records import Loaded
    from training.data.reward_data import HELD_OUT, HH, POOLED, load_reward_data
    from training.pairs import score_pairs

    encoder, old, new = _models(champion, challenger)
    loaded = Loaded()
    load_generic(kept, loaded)
    sets = {**load_reward_data(data_dir).eval_sets, gate.FEEDBACK: loaded.pairs}

    def correct(model: ScoringModel, name: str) -> np.ndarray:
        chosen, rejected = score_pairs(model, encoder, sets[name], desc=f"gate {name}")
        return np.asarray(chosen > rejected)

    scored = {}
    for name, pairs in sets.items():
        if not pairs:
            continue
        scored[name] = whole = gate.Scored(correct(old, name), correct(new, name), accuracy)
        subsets = np.array([p.subset for p in pairs])
        if name != gate.FEEDBACK and len(set(subsets)) > 1:  # each subset is gated too
            for subset in sorted(set(subsets)):
                mask = subsets == subset
                scored[subset] = gate.Scored(whole.champion[mask], whole.challenger[mask],
                                             accuracy)
    fed = scored.pop(gate.FEEDBACK)
    shown = {name: v for name, v in scored.items() if name.split("/")[0] in HELD_OUT}
    original = {name: v for name, v in scored.items() if name not in shown}
    return Judged("pairwise accuracy", fed, original,
                  [name for name in (HH, *POOLED) if name in original], shown)


def mean_auprc(outputs: np.ndarray, rows: np.ndarray) -> float:
    """outputs: (n, 2K) logits then targets (UNKNOWN = -1); the mean AUPRC over categories with
    both classes among the known labels of `rows`."""
    from training.class_metrics import average_precision

    k = outputs.shape[1] // 2
    logits, targets = outputs[rows, :k], outputs[rows, k:]
    values = []
    for c in range(k):
        known = targets[:, c] >= 0
        labels = targets[known, c]
        if labels.min(initial=1) == 0 and labels.max(initial=0) == 1:
            values.append(average_precision(logits[known, c], labels))
    return float(np.mean(values)) if values else float("nan")


def judge_moderation(champion: Path, challenger: Path, kept: Path, data_dir: Path | None,
                     parent: Manifest) -> Judged:
    from models.taxonomy import CATEGORIES
    from training.data.labelled import Labelled, load_moderation_jsonl
    from training.data.text_sets import MODERATION_SOURCES, load_moderation_data
    from training.texts import UNKNOWN, predict_logits

    encoder, old, new = _models(champion, challenger)
    own = Labelled()
    load_moderation_jsonl(kept, own)
    tests = load_moderation_data(data_dir, suites=False).tests
    sets = {**{name: tests[name] for name in MODERATION_SOURCES}, gate.FEEDBACK: own.examples}

    def outputs(model: ScoringModel, name: str) -> np.ndarray:
        examples = sets[name]
        logits = predict_logits(model, encoder, [e.text for e in examples], desc=f"gate {name}")
        targets = np.array([[e.labels.get(c, UNKNOWN) for c in CATEGORIES] for e in examples],
                           dtype=np.float64).reshape(len(examples), len(CATEGORIES))
        return np.concatenate([logits, targets], axis=1)

    scored = {name: gate.Scored(outputs(old, name), outputs(new, name), mean_auprc)
              for name in sets if sets[name]}
    fed = scored.pop(gate.FEEDBACK)
    return Judged("mean AUPRC over categories", fed, scored, list(MODERATION_SOURCES), {})


def intent_dataset(parent: Manifest) -> str | None:
    """The catalogued intent set the parent was trained on, if any (its data fingerprints)."""
    return next((d.name for d in parent.data if d.name in ("banking77", "clinc150")), None)


def judge_intent(champion: Path, challenger: Path, kept: Path, data_dir: Path | None,
                 parent: Manifest) -> Judged:
    from training.data.labelled import Labelled, load_intent_jsonl
    from training.data.text_sets import load_intent_data
    from training.texts import predict_logits

    encoder, old, new = _models(champion, challenger)
    dataset = intent_dataset(parent)
    own = Labelled()
    load_intent_jsonl(kept, own)
    sets = {gate.FEEDBACK: own.examples}
    if dataset:
        sets[dataset] = load_intent_data(dataset, data_dir).tests[dataset]
    index = {label: i for i, label in enumerate(parent.labels)}

    def correct(model: ScoringModel, name: str) -> np.ndarray:
        examples = [e for e in sets[name] if e.label in index]  # in scope
        logits = predict_logits(model, encoder, [e.text for e in examples], desc=f"gate {name}")
        return np.asarray(logits.argmax(axis=1) == np.array([index[e.label] for e in examples]))

    scored = {name: gate.Scored(correct(old, name), correct(new, name), accuracy)
              for name in sets if sets[name]}
    fed = scored.pop(gate.FEEDBACK)
    return Judged("top-1 accuracy (in scope)", fed, scored, list(scored), {})


JUDGES: dict[str, Judge] = {"reward": judge_reward, "moderation": judge_moderation,
                            "intent": judge_intent}


def pooled(original: dict[str, gate.Scored], names: Sequence[str]) -> gate.Scored:
    """Several original sets as one."""
    parts = [original[n] for n in names]
    return gate.Scored(np.concatenate([p.champion for p in parts]),
                       np.concatenate([p.challenger for p in parts]), parts[0].measure)


# --- the whole loop ---------------------------------------------------------------------------

def retrain(task: str, tag: str, output: Path, feedback: FeedbackStore,
            data_dir: Path | None = None, since: datetime | None = None,
            until: datetime | None = None, overrides: dict[str, Any] | None = None,
            tolerance: float = gate.TOLERANCE_POINTS, promote: bool = True,
            min_records: int = MIN_RECORDS) -> Retrained:
    expected, kind = TASKS[task]
    parent = store.get(tag)
    if parent.manifest.task is not expected:
        raise RetrainError(f"{parent.tag} is a {parent.manifest.task.value} model, not a "
                           f"{task} model")
    weights = parent.path / WEIGHTS_DIR
    if not (weights / "head.safetensors").is_file():
        raise RetrainError(f"{parent.tag} keeps no training weights ({WEIGHTS_DIR}/): it was "
                           "exported before the store kept them; export it again from its run")
    output.mkdir(parents=True, exist_ok=True)
    print(f"[1/4] feedback: exporting {kind} records from {feedback.describe()}")
    used, train_file, kept_file = export_feedback(feedback, kind, output, since, until,
                                                  min_records)
    span = " .. ".join(f"{t:%Y-%m-%d %H:%M}" for t in (used.first, used.last) if t)
    print(f"      {used.records} records ({span} UTC): {used.trained_on} to train on, "
          f"{used.held_out} held out")
    config = continue_config(parent.manifest, weights, task, overrides or {})
    print(f"[2/4] training the challenger from {parent.tag} on the feedback and "
          f"{config.replay:g}x as much replayed original data")
    challenger = _train(task, config, output / "challenger", data_dir, train_file,
                        parent.manifest)
    print("[3/4] gate: champion and challenger on the same held-out sets")
    judged = JUDGES[task](weights, challenger, kept_file, data_dir, parent.manifest)
    decision = gate.decide(judged.metric, judged.feedback, judged.original,
                           pooled(judged.original, judged.pool) if judged.pool else None,
                           tolerance, judged.shown)
    report.write_json(output / "gate.json", {"champion": parent.tag, "feedback":
                                             used.model_dump(mode="json"), **decision.record()})
    gate.plot(decision, output / "gate.png")
    print(gate.table(decision))
    print(("PROMOTED: " if decision.promoted else "REFUSED: ") + "; ".join(decision.reasons))
    if (needed := gate.examples_needed(decision.sets[0])) is not None:
        records = math.ceil(needed * used.records / used.held_out)
        print(f"      more feedback: about {records} {kind} records in all ({used.records} now) "
              f"would hold out about {needed}, if the gain stays this size")
    print(f"      report: {output / 'gate.json'}, {output / 'gate.png'}")
    if not decision.promoted or not promote:
        return Retrained(decision, challenger, None)
    print("[4/4] export through the parity gate and save to the store")
    lineage = Lineage(parent=parent.tag, feedback=used, replay=float(config.replay or 0),
                      gate=decision.record())
    new_tag = _export(challenger, output / "artifact", parent.manifest, lineage, data_dir)
    print(f"      saved as {new_tag}; serve it with `alignserve models promote {new_tag} --url "
          "URL` (or restart: a name without a version serves the latest)")
    return Retrained(decision, challenger, new_tag)


def _train(task: str, config: TrainConfig, output: Path, data_dir: Path | None,
           train_file: Path, parent: Manifest) -> Path:
    from training.intent import train_intent
    from training.moderation import train_moderation
    from training.reward import train_reward

    common: dict[str, Any] = {"name": parent.name, "preset": "retrain",
                              "train_only": [train_file]}
    if task == "reward":
        result = train_reward(config, output, data_dir, **common)
    elif task == "moderation":
        result = train_moderation(config, output, data_dir, **common)
    else:
        result = train_intent(config, output, intent_dataset(parent) or "own", data_dir,
                              **common)
    if result is None:
        raise RetrainError("training stopped before the end")
    return result.model_dir


def _export(challenger: Path, artifact: Path, parent: Manifest, lineage: Lineage,
            data_dir: Path | None) -> str:
    from training.export import export_checkpoint

    if Manifest.load(challenger).labels != parent.labels:
        raise RetrainError(f"the challenger's labels differ from {lineage.parent}'s")
    exported = export_checkpoint(challenger, artifact, parent.name, data_dir=data_dir)
    exported.model_copy(update={"lineage": lineage, "backbone": parent.backbone}).save(artifact)
    return store.save(artifact)
