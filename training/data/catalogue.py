"""The catalogue of public preference sets: where each comes from, its files and checksums.

Files are read from a data directory (ALIGNSERVE_DATA_DIR, default ../shared/data beside the
repository) and verified against the checksums here before any record is parsed, so the same
loader can be pointed at a fresh download of the canonical source.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from models.manifest import DataFingerprint, sha256_file
from training.data import oasst, preference, truthfulqa
from training.data.records import Loaded

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
    # "train+eval": carved into its own grouped train / validation / test split and pooled for
    # training; "held-out": never trained on, a whole-set out-of-distribution check.
    role: str

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
        preference.load_pandalm, "train+eval"),
    "hhh": Entry(
        "hhh", "hhh-alignment/hhh_alignment_eval.json.gz",
        "93823d536e7cd7aa5b5e3b53888794f757d5f9111ffaf715ade24c0cbce8d499",
        "prometheus-eval/prometheus-eval @dcfb4427 : eval/benchmark/data/hhh_alignment_eval.json",
        "Apache-2.0", preference.load_hhh, "held-out"),
    "finegrained-qa": Entry(
        "finegrained-qa", "finegrained-rlhf-qa-feedback/dev_feedback.json.gz",
        "dfdb329a568083246f42ccadc5d0d5807e5d919b55379e1791bacec4892d9cf2",
        "allenai/FineGrainedRLHF @a1469d4e : tasks/qa_feedback/data/dev_feedback.json",
        "Apache-2.0", preference.load_finegrained, "train+eval"),
    # Argument convincingness, not assistant replies: the farthest domain from hh-rlhf.
    "ukpconvarg": Entry(
        "ukpconvarg", "ukpconvarg1-strict/UKPConvArg1Strict-CSV.tar.gz",
        "a444db80412887080d022b79ca75ffccfa4f5d2ea84796b5e8a5d340cb373bc8",
        "UKPLab/acl2016-convincing-arguments @ca9d24e4 : data/UKPConvArg1Strict-CSV/*.csv",
        "open licenses (see the source README)", preference.load_ukpconvarg, "held-out"),
    # Multi-turn assistant replies ranked by people: the same shape as hh-rlhf.
    "oasst": Entry(
        "oasst", "oasst-en-100-trees/en_100_tree.jsonl.gz",
        "47c18759c55f6fb03bd3231f9ab4f86238db7c0829170118ee4d32d20d6bef5e",
        "LAION-AI/Open-Assistant @f1e6ed95 : model/model_eval/manual/data/en_100_tree.jsonl",
        "Apache-2.0", oasst.load_oasst, "train+eval"),
    "truthfulqa": Entry(
        "truthfulqa", "truthfulqa/TruthfulQA.csv",
        "99d6ae7755e3b435eade956068c9de7c0c474770344237aeb66b56519ba4b697",
        "sylinrl/TruthfulQA : TruthfulQA.csv (copy at benedictflorance/truthfulqa_experiments "
        "@6fdfd382 : datasets/TruthfulQA.csv)", "Apache-2.0", truthfulqa.load_truthfulqa,
        "train+eval"),
}


def verify(entry: Entry, data_dir: Path) -> Path:
    return verify_file(entry.name, entry.file, entry.sha256, entry.source, data_dir)


def verify_file(name: str, relative: str, digest: str, source: str, data_dir: Path) -> Path:
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
