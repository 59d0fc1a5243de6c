"""Evaluation of a reward model on preference sets, each reported on its own.

The catalogued sets are the held-out hh-rlhf test split (per subset, never trained on) and the
other-source sets (PandaLM, HHH, FineGrainedRLHF QA), which test generalisation beyond hh-rlhf.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.inputs import PairEncoder
from models.manifest import DataFingerprint, sha256_file
from training.data import catalogue
from training.data.preference import load_generic
from training.data.records import Loaded, PreferencePair
from training.data.split import Split, split_pairs
from training.metrics import pairwise_metrics
from training.modeling import ScoringModel
from training.reward import score_pairs

HH_SUBSETS = [name for name in catalogue.PREFERENCE_SETS if name.startswith("hh-rlhf/")]
OTHER_SOURCES = [name for name, e in catalogue.PREFERENCE_SETS.items() if e.role == "eval"]


@dataclass
class RewardData:
    splits: dict[Split, list[PreferencePair]]
    eval_sets: dict[str, list[PreferencePair]]  # hh-rlhf = its test split only
    fingerprints: list[DataFingerprint] = field(default_factory=list)


def load_reward_data(data_dir: Path | None = None, extra: Sequence[Path] = (),
                     skip_invalid: bool = False, other_sources: bool = True) -> RewardData:
    """hh-rlhf split by conversation, the other-source sets for evaluation, and users' own JSONL
    files (`extra`), which join the split and get a test set of their own. Callers that need
    only the splits (export, benchmarks) pass other_sources=False and skip loading those sets."""
    fingerprints: list[DataFingerprint] = []

    def catalogued(name: str) -> list[PreferencePair]:
        loaded = catalogue.load(name, data_dir)
        fingerprints.append(catalogue.PREFERENCE_SETS[name].fingerprint(loaded))
        return loaded.pairs

    hh = [pair for name in HH_SUBSETS for pair in catalogued(name)]
    for path in extra:
        loaded = Loaded(skip_invalid=skip_invalid)
        load_generic(path, loaded)
        fingerprints.append(DataFingerprint(name=path.stem, files={path.name: sha256_file(path)},
                                            records=len(loaded.pairs),
                                            skipped=dict(loaded.skipped)))
        hh += loaded.pairs
    splits = split_pairs(hh)
    eval_sets = {"hh-rlhf": [p for p in splits["test"] if p.subset.startswith("hh-rlhf/")]}
    eval_sets.update({path.stem: [p for p in splits["test"] if p.subset == path.stem]
                      for path in extra})
    if other_sources:
        eval_sets.update({name: catalogued(name) for name in OTHER_SOURCES})
    return RewardData(splits, eval_sets, fingerprints)


@dataclass
class SetResult:
    metrics: dict[str, float]
    chosen: np.ndarray
    rejected: np.ndarray


def evaluate_sets(model: ScoringModel, encoder: PairEncoder,
                  sets: Mapping[str, Sequence[PreferencePair]], temperature: float,
                  max_tokens: int = 4096) -> dict[str, SetResult]:
    """Metrics per set, and per subset where a set has several (hh-rlhf/helpful-base, hhh/…)."""
    results: dict[str, SetResult] = {}
    for name, pairs in sets.items():
        if not pairs:
            continue
        chosen, rejected = score_pairs(model, encoder, pairs, max_tokens, desc=f"eval {name}")
        results[name] = SetResult(pairwise_metrics(chosen - rejected, temperature), chosen,
                                  rejected)
        subsets = np.array([pair.subset for pair in pairs])
        if len(set(subsets)) > 1:
            for subset in sorted(set(subsets)):
                mask = subsets == subset
                results[subset] = SetResult(
                    pairwise_metrics(chosen[mask] - rejected[mask], temperature),
                    chosen[mask], rejected[mask])
    return results
