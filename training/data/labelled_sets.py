"""The catalogue of public labelled sets (moderation, behavioural suites, intents): where each
comes from, its files and checksums, and how its files become train / validation / test splits.
Every file is verified against its checksum before a record is parsed (catalogue.verify_file).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.manifest import DataFingerprint
from training.data import clean_requests, labelled
from training.data.catalogue import PREFERENCE_SETS, default_data_dir, verify_file
from training.data.labelled import Labelled
from training.data.split import split_of

Splits = dict[str, Labelled]


@dataclass(frozen=True)
class LabelledEntry:
    name: str
    files: dict[str, str]  # relative to the data directory -> sha256
    source: str
    license: str
    kind: str  # "moderation", "suite" (behavioural tests, never trained on) or "intent"
    read: Callable[[dict[str, Path], bool], Splits]  # verified files -> splits

    def fingerprint(self, splits: Splits) -> DataFingerprint:
        skipped: Counter[str] = Counter()
        for part in splits.values():
            skipped.update(part.skipped)
        return DataFingerprint(name=self.name, files=dict(self.files),
                               records=sum(len(p.examples) for p in splits.values()),
                               skipped=dict(skipped))


def _one(parse: Callable[[Path, Labelled], None], split: str = "test"
         ) -> Callable[[dict[str, Path], bool], Splits]:
    def read(files: dict[str, Path], skip: bool) -> Splits:
        (path,) = files.values()
        out = Labelled(skip_invalid=skip)
        parse(path, out)
        return {split: out}
    return read


def _carved(parse: Callable[[Path, Labelled], None]) -> Callable[[dict[str, Path], bool], Splits]:
    """One file carved 80/10/10 by a hash of the text: a repeated text stays in one split."""
    def read(files: dict[str, Path], skip: bool) -> Splits:
        (path,) = files.values()
        whole = Labelled(skip_invalid=skip)
        parse(path, whole)
        splits = {name: Labelled() for name in ("train", "validation", "test")}
        for example in whole.examples:
            splits[split_of(example.text.lower())].examples.append(example)
        splits["train"].skipped = whole.skipped
        return splits
    return read


def _tweeteval(category: str) -> Callable[[dict[str, Path], bool], Splits]:
    def read(files: dict[str, Path], skip: bool) -> Splits:
        splits = {}
        for split, stem in (("train", "train"), ("validation", "val"), ("test", "test")):
            out = Labelled(skip_invalid=skip)
            texts, = (p for k, p in files.items() if k.endswith(f"/{stem}_text.txt"))
            labels, = (p for k, p in files.items() if k.endswith(f"/{stem}_labels.txt"))
            labelled.load_tweeteval(texts, labels, category, out)
            splits[split] = out
        return splits
    return read


def _split_column(load: Callable[[Path, str, Labelled], None], parts: tuple[str, str, str]
                  ) -> Callable[[dict[str, Path], bool], Splits]:
    """One file whose records name their own split; `parts`: its names for train, validation
    and test."""
    def read(files: dict[str, Path], skip: bool) -> Splits:
        (path,) = files.values()
        splits = {}
        for split, part in zip(("train", "validation", "test"), parts, strict=True):
            splits[split] = Labelled(skip_invalid=skip)
            load(path, part, splits[split])
        return splits
    return read


def _convabuse(files: dict[str, Path], skip: bool) -> Splits:
    """ConvAbuse's own train / valid / test files."""
    splits = {}
    for split, stem in (("train", "train"), ("validation", "valid"), ("test", "test")):
        splits[split] = Labelled(skip_invalid=skip)
        labelled.load_convabuse(files[f"convabuse/ConvAbuseEMNLP{stem}.csv"], splits[split])
    return splits


def _banking77(files: dict[str, Path], skip: bool) -> Splits:
    """The official test split untouched; validation carved from train (10%, by text hash)."""
    train, test = Labelled(skip_invalid=skip), Labelled(skip_invalid=skip)
    labelled.load_banking77(files["banking77/train.csv"], train)
    labelled.load_banking77(files["banking77/test.csv"], test)
    carved = {"train": Labelled(skipped=train.skipped), "validation": Labelled()}
    for example in train.examples:
        part = split_of(example.text.lower(), (0.9, 0.1))
        carved["train" if part == "train" else "validation"].examples.append(example)
    return {**carved, "test": test}


_TWEETEVAL = "cardiffnlp/tweeteval @4fbd22cd : datasets/{}/"
_TWEETEVAL_LICENSE = "released without restrictions by TweetEval; task and Twitter terms apply"
LABELLED_SETS: dict[str, LabelledEntry] = {
    "davidson": LabelledEntry(
        "davidson", {"davidson-hate-offensive/labeled_data.csv.gz":
                     "013b5fd791257fe28e1b32f7c74cbb1b10c1abd0fcbec3a1db525ba2b6aff1ef"},
        "t-davidson/hate-speech-and-offensive-language @cb50f7e9 : data/labeled_data.csv",
        "MIT", "moderation", _carved(labelled.load_davidson)),
    "tweeteval-hate": LabelledEntry(
        "tweeteval-hate", {
            "tweeteval-hate/train_text.txt":
                "6572bb3a42143128a5dfa99af8debeb0668e637c34b2d1e3140dac47316fe2c2",
            "tweeteval-hate/train_labels.txt":
                "4e8fde025a453a25c94632794254131dedeac4e57228ad64157c41571cc88f71",
            "tweeteval-hate/val_text.txt":
                "1ff78b1ed4c5ce43284b9eba32eb7d60c6d45d0d1b3b4d6df456ae01640764f1",
            "tweeteval-hate/val_labels.txt":
                "5092badf1a0e70036ea6264bcd0b78afc07d0f4a512fa6af34c2c4973600656b",
            "tweeteval-hate/test_text.txt":
                "bc4762876a8dd8baa55c3cd7b03108e3231a5d691e80b8b1ef97c5be31b9da9a",
            "tweeteval-hate/test_labels.txt":
                "c14adca6b3627616a835c5ccea8a1cceb0235cd79417257f093eb0e16a69c62f"},
        _TWEETEVAL.format("hate"), _TWEETEVAL_LICENSE, "moderation", _tweeteval("hate")),
    "tweeteval-offensive": LabelledEntry(
        "tweeteval-offensive", {
            "tweeteval-offensive/train_text.txt":
                "78a7a32e38b10af7d8970b008bf17f661c8d0a90dad145fa0fa6a944669650db",
            "tweeteval-offensive/train_labels.txt":
                "c0b7d6ebdaa4ebcf6fc557ef1e775d92eda160218a0e3b1dd48eb8234dc892a6",
            "tweeteval-offensive/val_text.txt":
                "816f36d180c35f15a5104838cb73856a0bef42043482fe738f3481b06242a55c",
            "tweeteval-offensive/val_labels.txt":
                "ed2deb776bd1c52fb8221fadd3360e32d9dfe46842d78053528126e46363a258",
            "tweeteval-offensive/test_text.txt":
                "25b08c3333c26190f1023961c4508ec9aab24d4722b1a3ea7a6040724c120547",
            "tweeteval-offensive/test_labels.txt":
                "41d05a7aa0b01f5dafab21b95adb4f979cb4226c046ff315702774d10dac1605"},
        _TWEETEVAL.format("offensive"), _TWEETEVAL_LICENSE, "moderation",
        _tweeteval("offensive")),
    "edos": LabelledEntry(
        "edos", {"edos/edos_labelled_aggregated.csv.gz":
                 "4d1f5ba40053e22d8e3dc5b96beaccee813952558650da6e8c1ad6a14c421439"},
        "rewire-online/edos @b1f1fbcc : data/edos_labelled_aggregated.csv", "CC0-1.0",
        "moderation", _split_column(labelled.load_edos, ("train", "dev", "test"))),
    "convabuse": LabelledEntry(
        "convabuse", {
            "convabuse/ConvAbuseEMNLPtrain.csv":
                "23abab3eff791d0e8cac681cec15a5ef299ed052699e4fca762d1d4640c36936",
            "convabuse/ConvAbuseEMNLPvalid.csv":
                "a28bc3083fe3ea305b8c417539a20fda7e68057dc06365507b85c46b60e65443",
            "convabuse/ConvAbuseEMNLPtest.csv":
                "8387d70332cd2245a095240534629152dd5729e8e9556e91b6b20dabdc0bb9d0"},
        "amandacurry/convabuse @c0a9469f : 2_splits/", "CC-BY-4.0", "moderation", _convabuse),
    "hatecheck": LabelledEntry(
        "hatecheck", {"hatecheck/test_suite_cases.csv.gz":
                      "6ed8aa6748cc235ad435faf96f298114be9544153880aef2611eaadcbcb8f720"},
        "paul-rottger/hatecheck-data @d8430229 : test_suite_cases.csv", "CC-BY-4.0", "suite",
        _one(labelled.load_hatecheck)),
    "xstest": LabelledEntry(
        "xstest", {"xstest/xstest_prompts.csv":
                   "11783fb294ed017473ee53c207d71f2161c7672c8d0b037501e78387f801cb5a"},
        "paul-rottger/exaggerated-safety @d7bb5bd7 : xstest_prompts.csv", "CC-BY-4.0", "suite",
        _one(labelled.load_xstest)),
    "simplesafetytests": LabelledEntry(
        "simplesafetytests", {"simplesafetytests/SimpleSafetyTests_test_cases.csv":
                              "6d95a1301e0d0f3a3c4cf5392f4afff11ad6e3066f95d23aaa138d44aedf986c"},
        "bertiev/SimpleSafetyTests @d7aee9a9 : SimpleSafetyTests_test_cases.csv", "CC-BY-4.0",
        "suite", _one(labelled.load_simplesafetytests)),
    "banking77": LabelledEntry(
        "banking77", {"banking77/train.csv":
                      "b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b",
                      "banking77/test.csv":
                      "d12d6e3bc4c3103966ae786dc435913c0c563dfa328f5a3646d0e62cfeeb474d"},
        "PolyAI-LDN/task-specific-datasets @57ec275d : banking_data/", "CC-BY-4.0", "intent",
        _banking77),
    "clinc150": LabelledEntry(
        "clinc150", {"clinc150/data_full.json.gz":
                     "01cce723a1b3a2a342158c5b4545e5255bc167fa6037c8a827b1908e504a9014"},
        "clinc/oos-eval @828f8093 : data/data_full.json", "CC-BY-3.0", "intent",
        _split_column(labelled.load_clinc150, ("train", "val", "test"))),
}


def _clean_requests_entry() -> LabelledEntry:
    """Built from files catalogued for other tasks, with their checksums."""
    intents = {rel: digest for name in ("banking77", "clinc150")
               for rel, digest in LABELLED_SETS[name].files.items() if "test" not in rel}
    preference = {PREFERENCE_SETS[name].file: PREFERENCE_SETS[name].sha256
                  for name in ("truthfulqa", *(f"hh-rlhf/{s}" for s in clean_requests.HH_SUBSETS))}
    return LabelledEntry(
        clean_requests.NAME, {**intents, **preference},
        "requests gathered from banking77, CLINC150, TruthfulQA and hh-rlhf's helpful subsets "
        "(see their entries)", "per source", "moderation", clean_requests.read)


LABELLED_SETS[clean_requests.NAME] = _clean_requests_entry()


def load_labelled(name: str, data_dir: Path | None = None, skip_invalid: bool = True
                  ) -> tuple[LabelledEntry, Splits]:
    """Verify every file of a labelled set, then parse it into its splits."""
    try:
        entry = LABELLED_SETS[name]
    except KeyError:
        raise KeyError(f"unknown set {name!r}; known: {', '.join(LABELLED_SETS)}") from None
    directory = data_dir or default_data_dir()
    files = {rel: verify_file(name, rel, digest, entry.source, directory)
             for rel, digest in entry.files.items()}
    return entry, entry.read(files, skip_invalid)
