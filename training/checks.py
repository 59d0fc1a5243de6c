"""The validation metric each task's int8 graph must hold at export (see int8_gate.py).

reward: pairwise accuracy on the pooled validation split (and the share of the pairs fp32
decides, at the model's calibrated temperature, whose order int8 keeps); moderation: mean
AUPRC over the categories on the moderation validation splits; intents: top-1 accuracy on the
in-scope validation split of the set the model was trained on.
An imported classifier's labels are its own, so there is no metric to hold: int8 must keep its
decisions (every label's at 0.5, or the top label) on the same validation texts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.inputs import EncodedPair, PairEncoder
from models.manifest import Manifest, Task
from training.class_metrics import average_precision
from training.int8_gate import ValidationCheck, pairwise_check
from training.texts import UNKNOWN, EncodedTexts


def validation_check(manifest: Manifest, encoder: PairEncoder, data_dir: Path | None = None
                     ) -> ValidationCheck:
    if manifest.task is Task.reward:
        from training.data.reward_data import load_reward_data
        from training.pairs import EncodedPairs

        pairs = EncodedPairs.build(encoder, load_reward_data(
            data_dir, other_sources=False).splits["validation"])
        return pairwise_check(pairs.chosen, pairs.rejected,
                              temperature=manifest.temperature or 1.0)
    from training.data.text_sets import OOS_LABEL, load_intent_data, load_moderation_data

    if "imported" in manifest.training:
        texts = (load_moderation_data(data_dir, suites=False).validation
                 if manifest.task is Task.multilabel
                 else load_intent_data("banking77", data_dir).validation)
        return decisions_check(manifest, encoder.encode_texts([e.text for e in texts]))
    if manifest.task is Task.multilabel:
        data = load_moderation_data(data_dir, suites=False)
        encoded = EncodedTexts.multilabel(encoder, data.validation, manifest.labels)
        targets = encoded.targets

        def mean_auprc(outputs: np.ndarray, rows: np.ndarray) -> float:
            out, target = outputs[rows], targets[rows]
            scores = [average_precision(out[known, k], target[known, k])
                      for k in range(len(manifest.labels))
                      for known in [target[:, k] != UNKNOWN]
                      if known.any() and 0 < target[known, k].sum() < known.sum()]
            return float(np.mean(scores))

        return ValidationCheck("mean AUPRC over categories (moderation validation)",
                               encoded.items, len(encoded.items), mean_auprc)
    dataset = next((d.name for d in manifest.data if d.name in ("banking77", "clinc150")),
                   "own")
    data = load_intent_data(dataset, data_dir)
    examples = [e for e in data.validation if e.label != OOS_LABEL and e.label in manifest.labels]
    encoded = EncodedTexts.multiclass(encoder, examples, manifest.labels)
    return ValidationCheck(
        f"top-1 accuracy ({dataset} validation, in scope)", encoded.items, len(encoded.items),
        lambda out, rows: float((out[rows].argmax(axis=1) == encoded.targets[rows]).mean()),
        lambda fp32, int8, rows: fp32[rows].argmax(axis=1) == int8[rows].argmax(axis=1),
        "share of texts whose top intent int8 keeps")


def decisions_check(manifest: Manifest, items: list[EncodedPair]) -> ValidationCheck:
    """int8 judged by the decisions it keeps alone (the metric is the share kept, so the
    bootstrap interval of its drop is read as well)."""
    def decisions(out: np.ndarray) -> np.ndarray:
        return out > 0 if manifest.task is Task.multilabel else out.argmax(axis=1)[:, None]

    def kept(fp32: np.ndarray, int8: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return (decisions(fp32[rows]) == decisions(int8[rows])).all(axis=1)

    what = ("every label's decision at 0.5" if manifest.task is Task.multilabel
            else "the top label")
    return ValidationCheck(f"none: imported labels; int8 must keep {what} on validation texts",
                           items, len(items), lambda _out, _rows: 1.0, kept,
                           f"share of texts whose decisions ({what}) int8 keeps")
