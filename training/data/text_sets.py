"""The classifiers' data: moderation (Davidson, TweetEval hate and offensive, EDOS, ConvAbuse,
clean requests, and the behavioural suites HateCheck, XSTest and SimpleSafetyTests, never trained
on) and intents (banking77 or CLINC150), each with users' own JSONL files carved in.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from models.manifest import DataFingerprint, sha256_file
from training.data import clean_requests, labelled_sets
from training.data.labelled import (
    Labelled,
    TextExample,
    load_intent_jsonl,
    load_moderation_jsonl,
)
from training.data.split import sample, split_of

MODERATION_SOURCES = ("davidson", "tweeteval-hate", "tweeteval-offensive", "edos", "convabuse")
# Labelled 0 on every category by how it was written (training/data/clean_requests.py): trained
# and calibrated on like a source; its test split measures over-flagging, having no positives
# to score AUPRC on.
CLEAN_SOURCES = (clean_requests.NAME,)
# A source with at most this many training texts is trained on whole, never sampled: ConvAbuse
# (2,501 turns) holds the only harassment and sexual-harassment labels, too few to thin out.
WHOLE_SOURCE_MAX = 3_000
# Sources whose hate labels are read from another category's (training/data/labelled.py):
# EDOS's sexist threats and derogation, ConvAbuse's identity-based abuse. Only those named in
# `hate_also_from` train and calibrate hate; every test split keeps them, for evaluation.
HATE_ALSO = ("edos", "convabuse")
SUITES = ("hatecheck", "xstest", "simplesafetytests")
OOS_LABEL = "oos"  # CLINC150's name for its out-of-scope queries
Parse = Callable[[Path, Labelled], None]


@dataclass
class TextData:
    train: list[TextExample] = field(default_factory=list)  # the catalogued sets'
    train_whole: list[TextExample] = field(default_factory=list)  # small sources, never sampled
    validation: list[TextExample] = field(default_factory=list)
    tests: dict[str, list[TextExample]] = field(default_factory=dict)
    fingerprints: list[DataFingerprint] = field(default_factory=list)
    own_train: list[TextExample] = field(default_factory=list)  # users' files' train parts

    def sizes(self, used: int) -> dict[str, int]:
        """Split sizes for the report; `used` is how many training texts were sampled."""
        return {"train": len(self.train) + len(self.train_whole) + len(self.own_train),
                "validation": len(self.validation), "train_used": used,
                **{f"test/{k}": len(v) for k, v in self.tests.items()}}

    def training(self, limit: int | None, seed: int, replay: float | None
                 ) -> list[TextExample]:
        """What to train on: at most `limit` texts, every text of the small sources (a sample
        of them when they would fill more than half of `limit`) and the rest sampled with the
        seed; or, when re-training with `replay`, every text of the users' files plus `replay`
        times as many sampled from the catalogued sets."""
        if replay is None:
            if limit is None:
                return self.train_whole + self.train + self.own_train
            whole = sample(self.train_whole, limit // 2, seed)
            return whole + sample(self.train + self.own_train, limit - len(whole), seed)
        if not self.own_train:
            raise ValueError("replay needs --train-data: there is nothing new to learn")
        return self.own_train + sample(self.train + self.train_whole,
                                       round(replay * len(self.own_train)), seed)


def _add_own(data: TextData, path: Path, parse: Parse, skip_invalid: bool,
             train_only: bool = False) -> None:
    """Your JSONL, carved 80/10/10 by text hash; its test part is reported on its own. A
    train-only file (feedback that `alignserve retrain` split itself) is all training data."""
    own = Labelled(skip_invalid=skip_invalid)
    parse(path, own)
    test: list[TextExample] = []
    for example in own.examples:
        part = "train" if train_only else split_of(example.text.lower())
        (data.own_train if part == "train" else data.validation if part == "validation"
         else test).append(example)
    if not train_only:
        data.tests[path.stem] = test
    data.fingerprints.append(DataFingerprint(
        name=path.stem, files={path.name: sha256_file(path)},
        records=len(own.examples), skipped=dict(own.skipped)))


def load_moderation_data(data_dir: Path | None = None, extra: Sequence[Path] = (),
                         skip_invalid: bool = False, suites: bool = True,
                         exclude: Collection[str] = (), train_only: Sequence[Path] = (),
                         hate_also_from: Collection[str] = ()) -> TextData:
    """Sources in `exclude` are neither trained nor calibrated on; their test split stays. The
    hate labels of a `HATE_ALSO` source not in `hate_also_from` are left out of its training
    and validation texts (unknown there) and kept in its test split."""
    unknown = set(exclude) - {*MODERATION_SOURCES, *CLEAN_SOURCES}
    if unknown:
        raise ValueError(f"cannot exclude {sorted(unknown)}: the moderation sources are "
                         f"{[*MODERATION_SOURCES, *CLEAN_SOURCES]}")
    check_hate_also(hate_also_from)
    data = TextData()
    for name in (*MODERATION_SOURCES, *CLEAN_SOURCES, *(SUITES if suites else ())):
        entry, splits = labelled_sets.load_labelled(name, data_dir)
        data.fingerprints.append(entry.fingerprint(splits))
        if entry.kind == "suite" or name in exclude:
            data.tests[name] = splits["test"].examples
            continue
        train, validation = splits["train"].examples, splits["validation"].examples
        if name in HATE_ALSO and name not in hate_also_from:
            train, validation = _without_hate(train), _without_hate(validation)
        if len(train) <= WHOLE_SOURCE_MAX:
            data.train_whole += train
        else:
            data.train += train
        data.validation += validation
        data.tests[name] = splits["test"].examples
    for path in extra:
        _add_own(data, path, load_moderation_jsonl, skip_invalid)
    for path in train_only:
        _add_own(data, path, load_moderation_jsonl, skip_invalid, train_only=True)
    return data


def check_hate_also(names: Collection[str]) -> None:
    """Refuses a `hate_also_from` source that is not one of HATE_ALSO."""
    if unknown := set(names) - set(HATE_ALSO):
        raise ValueError(f"hate_also_from: hate can also be read from {', '.join(HATE_ALSO)}, "
                         f"not {', '.join(sorted(unknown))}")


def _without_hate(examples: list[TextExample]) -> list[TextExample]:
    """The examples with hate unknown (as they were before hate was read from these sources)."""
    return [replace(e, labels={k: v for k, v in e.labels.items() if k != "hate"})
            for e in examples]


def load_intent_data(dataset: str, data_dir: Path | None = None, extra: Sequence[Path] = (),
                     skip_invalid: bool = False, train_only: Sequence[Path] = ()) -> TextData:
    """dataset: 'banking77', 'clinc150' or 'own' (only the --train-data files)."""
    data = TextData()
    if dataset != "own":
        entry, splits = labelled_sets.load_labelled(dataset, data_dir)
        if entry.kind != "intent":
            raise ValueError(f"{dataset} is not an intent set")
        data.fingerprints.append(entry.fingerprint(splits))
        data.train, data.validation = splits["train"].examples, splits["validation"].examples
        data.tests[dataset] = splits["test"].examples
    for path in extra:
        _add_own(data, path, load_intent_jsonl, skip_invalid)
    for path in train_only:
        _add_own(data, path, load_intent_jsonl, skip_invalid, train_only=True)
    if not data.train and not data.own_train:
        raise ValueError("no intent training examples: give a dataset or --train-data")
    return data


def own_sets(files: Sequence[Path], parse: Parse, skip_invalid: bool
             ) -> dict[str, list[TextExample]]:
    """Users' JSONL files, whole, for evaluation: one set per file."""
    tests = {}
    for path in files:
        own = Labelled(skip_invalid=skip_invalid)
        parse(path, own)
        tests[path.stem] = own.examples
    return tests
