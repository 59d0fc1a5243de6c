"""The catalogue of public preference sets: where each comes from, its files and checksums.

Files are read from a data directory (ALIGNSERVE_DATA_DIR, default ../shared/data beside the
repository) and verified against the checksums here before any record is parsed, so the same
loader can be pointed at a fresh download of the canonical source.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from models.manifest import DataFingerprint, sha256_file
from training.data import labelled, preference
from training.data.labelled import Labelled
from training.data.records import Loaded
from training.data.split import split_of

Parser = Callable[[Path, Loaded], None]
REPO_ROOT = Path(__file__).resolve().parents[2]


def default_data_dir() -> Path:
    configured = os.environ.get("ALIGNSERVE_DATA_DIR")
    return Path(configured) if configured else (REPO_ROOT.parent / "shared" / "data").resolve()


class ChecksumError(RuntimeError):
    pass


@dataclass(frozen=True)
class Entry:
    name: str
    file: str  # relative to the data directory
    sha256: str
    source: str  # canonical public origin: repo @ commit : path
    license: str
    parse: Parser
    role: str  # "train+eval" (split into train/validation/test) or "eval" (never trained on)

    def fingerprint(self, loaded: Loaded) -> DataFingerprint:
        return DataFingerprint(name=self.name, files={self.file: self.sha256},
                               records=len(loaded.pairs), skipped=dict(loaded.skipped))


_HH_SOURCE = (
    "anthropics/hh-rlhf (test splits) via DaehanKim/EasyRLHF @45eccb72 : data/{}/test.jsonl.gz")
_HH = {
    "harmless-base": "ebfaaed21162a4de120ae85366075b34425e2a6303fac59b99555002f7016f03",
    "helpful-base": "8be3fc1a13b27901631696f2be6f184c799f1baeaf145f53ac5db24960adc37b",
    "helpful-online": "2094b210af6b2a792b1169d2930586c4b4b384d3b8a4a14460702d383c17df7f",
    "helpful-rejection-sampled": "6186fc698c638dd5c6bbb33e0c115762d6fdfac0a18969ff4901545307f89a54",
}

PREFERENCE_SETS: dict[str, Entry] = {
    **{
        f"hh-rlhf/{subset}": Entry(
            f"hh-rlhf/{subset}", f"hh-rlhf/{subset}/test.jsonl.gz", digest,
            _HH_SOURCE.format(subset), "MIT",
            partial(preference.load_hh_rlhf, subset=f"hh-rlhf/{subset}"), "train+eval")
        for subset, digest in _HH.items()
    },
    "pandalm": Entry(
        "pandalm", "pandalm-testset/testset-v1.json.gz",
        "5c2f20a644262dd461c462e002b4167b148a2689c7e77d469ccb09ee5c798e8f",
        "WeOpenML/PandaLM @3871806e : data/testset-v1.json", "Apache-2.0",
        preference.load_pandalm, "eval"),
    "hhh": Entry(
        "hhh", "hhh-alignment/hhh_alignment_eval.json.gz",
        "93823d536e7cd7aa5b5e3b53888794f757d5f9111ffaf715ade24c0cbce8d499",
        "prometheus-eval/prometheus-eval @dcfb4427 : eval/benchmark/data/hhh_alignment_eval.json",
        "Apache-2.0", preference.load_hhh, "eval"),
    "finegrained-qa": Entry(
        "finegrained-qa", "finegrained-rlhf-qa-feedback/dev_feedback.json.gz",
        "dfdb329a568083246f42ccadc5d0d5807e5d919b55379e1791bacec4892d9cf2",
        "allenai/FineGrainedRLHF @a1469d4e : tasks/qa_feedback/data/dev_feedback.json",
        "Apache-2.0", preference.load_finegrained, "eval"),
    # Argument convincingness, not assistant replies: the farthest domain from hh-rlhf.
    "ukpconvarg": Entry(
        "ukpconvarg", "ukpconvarg1-strict/UKPConvArg1Strict-CSV.tar.gz",
        "a444db80412887080d022b79ca75ffccfa4f5d2ea84796b5e8a5d340cb373bc8",
        "UKPLab/acl2016-convincing-arguments @ca9d24e4 : data/UKPConvArg1Strict-CSV/*.csv",
        "open licenses (see the source README)", preference.load_ukpconvarg, "eval"),
}


def verify(entry: Entry, data_dir: Path) -> Path:
    return _verify_file(entry.name, entry.file, entry.sha256, entry.source, data_dir)


def _verify_file(name: str, relative: str, digest: str, source: str, data_dir: Path) -> Path:
    path = data_dir / relative
    if not path.exists():
        raise FileNotFoundError(
            f"{name}: {path} is missing; fetch it from {source} "
            f"or point ALIGNSERVE_DATA_DIR at a directory that has it")
    actual = sha256_file(path)
    if actual != digest:
        raise ChecksumError(
            f"{name}: {path} has sha256 {actual}, the catalogue expects {digest}; "
            "the file differs from its public source")
    return path


def load(name: str, data_dir: Path | None = None, skip_invalid: bool = True) -> Loaded:
    """Verify and parse one catalogued set. Public sets carry a few malformed records (hh-rlhf
    has dialogues whose two sides diverge early), so they are skipped and counted by default."""
    try:
        entry = PREFERENCE_SETS[name]
    except KeyError:
        raise KeyError(f"unknown set {name!r}; known: {', '.join(PREFERENCE_SETS)}") from None
    path = verify(entry, data_dir or default_data_dir())
    loaded = Loaded(skip_invalid=skip_invalid)
    entry.parse(path, loaded)
    return loaded


# --- labelled text: moderation, behavioural suites, intents ---------------------------------

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


def _clinc150(files: dict[str, Path], skip: bool) -> Splits:
    (path,) = files.values()
    splits = {}
    for split, part in (("train", "train"), ("validation", "val"), ("test", "test")):
        splits[split] = Labelled(skip_invalid=skip)
        labelled.load_clinc150(path, part, splits[split])
    return splits


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
        "clinc/oos-eval @828f8093 : data/data_full.json", "CC-BY-3.0", "intent", _clinc150),
}


def load_labelled(name: str, data_dir: Path | None = None, skip_invalid: bool = True
                  ) -> tuple[LabelledEntry, Splits]:
    """Verify every file of a labelled set, then parse it into its splits."""
    try:
        entry = LABELLED_SETS[name]
    except KeyError:
        raise KeyError(f"unknown set {name!r}; known: {', '.join(LABELLED_SETS)}") from None
    directory = data_dir or default_data_dir()
    files = {rel: _verify_file(name, rel, digest, entry.source, directory)
             for rel, digest in entry.files.items()}
    return entry, entry.read(files, skip_invalid)
