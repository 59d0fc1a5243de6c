"""The reward model's data: a pool of human preference sources, each carved into its own grouped
train / validation / test split, held-out sources, and the behavioural suite.

Pooled ("train+eval" in the catalogue): hh-rlhf, Open-Assistant, PandaLM, TruthfulQA and
FineGrainedRLHF QA, plus users' own files. Held out, never trained on: HHH alignment (assistant
replies, the pure out-of-distribution check) and UKPConvArg (arguments, a far domain).

Sources are weighted on purpose (SOURCE_WEIGHTS): a weight w draws about w times a source's
training pairs per epoch (whole copies, then a seeded sample of the rest).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.manifest import DataFingerprint, sha256_file
from training import behaviour
from training.data import catalogue
from training.data.preference import load_generic
from training.data.records import Loaded, PreferencePair
from training.data.split import Split, split_pairs

HH = "hh-rlhf"
HH_SUBSETS = [name for name in catalogue.PREFERENCE_SETS if name.startswith(f"{HH}/")]
POOLED = [name for name, e in catalogue.PREFERENCE_SETS.items()
          if e.role == "train+eval" and not name.startswith(f"{HH}/")]
HELD_OUT = [name for name, e in catalogue.PREFERENCE_SETS.items() if e.role == "held-out"]

# source -> (weight, why). Sources not listed (users' own files) weigh 1.
SOURCE_WEIGHTS: dict[str, tuple[float, str]] = {
    HH: (1.0, "the target distribution: multi-turn assistant dialogues, helpful and harmless"),
    "oasst": (2.0, "the same multi-turn shape as hh-rlhf with careful human ranks, but only "
                   "~600 training pairs: counted twice so it is not drowned"),
    "pandalm": (1.0, "instruction following judged by three annotators (majority vote)"),
    "truthfulqa": (0.5, "honesty, but one-sentence answers in a single style: half weight so "
                        "short factual replies do not dominate"),
    "finegrained-qa": (0.25, "factual QA with six pairs per question and subtle differences "
                             "(noisy); a quarter weight"),
}


def source_of(pair: PreferencePair) -> str:
    """'hh-rlhf/helpful-base' -> 'hh-rlhf'; a user's 'mine/refunds' -> 'mine'."""
    return pair.subset.split("/")[0]


def validation_parts(pairs: Sequence[PreferencePair]) -> dict[str, np.ndarray]:
    """Each source and subset of a split (a source with no subsets is its own one part), as a
    mask over its pairs: what every report gives as `validation/<part>`."""
    parts = dict.fromkeys(name for p in pairs for name in (source_of(p), p.subset))
    return {name: np.array([name in (source_of(p), p.subset) for p in pairs])
            for name in parts}


@dataclass
class RewardData:
    splits: dict[Split, list[PreferencePair]]  # every pooled source
    eval_sets: dict[str, list[PreferencePair]]  # test splits, held-out sets, the suite
    fingerprints: list[DataFingerprint] = field(default_factory=list)


def load_reward_data(data_dir: Path | None = None, extra: Sequence[Path] = (),
                     skip_invalid: bool = False, other_sources: bool = True,
                     train_only: Sequence[Path] = ()) -> RewardData:
    """Every pooled source split by conversation or question, plus users' own JSONL files
    (`extra`), which join the split and get a test set of their own, and files that are
    training data only (`train_only`: feedback that `alignserve retrain` split itself). Callers
    that need only the splits (export, benchmarks) pass other_sources=False and skip loading
    the held-out sets and the suite."""
    fingerprints: list[DataFingerprint] = []

    def catalogued(name: str) -> list[PreferencePair]:
        loaded = catalogue.load(name, data_dir)
        fingerprints.append(catalogue.PREFERENCE_SETS[name].fingerprint(loaded))
        return loaded.pairs

    def own(path: Path) -> list[PreferencePair]:
        loaded = Loaded(skip_invalid=skip_invalid)
        load_generic(path, loaded)
        fingerprints.append(DataFingerprint(name=path.stem, files={path.name: sha256_file(path)},
                                            records=len(loaded.pairs),
                                            skipped=dict(loaded.skipped)))
        return loaded.pairs

    pooled = [p for name in HH_SUBSETS + POOLED for p in catalogued(name)]
    for path in extra:
        pooled += own(path)
    splits = split_pairs(pooled)
    for path in train_only:
        splits["train"] += own(path)
    by_source: dict[str, list[PreferencePair]] = defaultdict(list)
    for pair in splits["test"]:
        by_source[source_of(pair)].append(pair)
    eval_sets = {HH: by_source.pop(HH, []), **by_source}
    if other_sources:
        eval_sets.update({name: catalogued(name) for name in HELD_OUT})
        eval_sets[behaviour.SET_NAME] = behaviour.suite()
    return RewardData(splits, eval_sets, fingerprints)


def weighted(pairs: Sequence[PreferencePair], seed: int,
             weights: dict[str, tuple[float, str]] | None = None) -> list[PreferencePair]:
    """About weight x n pairs of each source: whole copies, then a seeded sample of the rest."""
    weights = SOURCE_WEIGHTS if weights is None else weights
    groups: dict[str, list[PreferencePair]] = defaultdict(list)
    for pair in pairs:
        groups[source_of(pair)].append(pair)
    rng = random.Random(seed)
    out: list[PreferencePair] = []
    for source in sorted(groups):
        members = groups[source]
        weight = weights.get(source, (1.0, ""))[0]
        copies, rest = divmod(round(weight * len(members)), len(members))
        out += members * copies + rng.sample(members, rest)
    return out
