"""Shared fixtures: a tiny randomly initialised BERT with its own small WordPiece vocabulary,
built from a config (a few hundred KB), and synthetic preference data."""

from __future__ import annotations

import json
import os
import random
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before anything imports bentoml: a private model store, no telemetry.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="alignserve-test-bentoml-")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"

WORDS = [
    "the", "a", "to", "of", "and", "is", "it", "you", "i", "can", "how", "what", "my", "do",
    "for", "help", "please", "thanks", "would", "like", "good", "bad", "great", "terrible",
    "excellent", "awful", "answer", "question", "order", "card", "account", "refund", "hello",
    "sorry", "human", "assistant", "weather", "music", "book", "food", "travel", "money", "time",
    "day",
]
MARKER = "excellent"


def _vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,:;!?'\"-()")
    tokens = specials + chars + [f"##{c}" for c in chars] + WORDS
    return list(dict.fromkeys(tokens))  # "a" and "i" are both characters and words


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT saved as a local Hugging Face directory with tokenizer.json."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny-bert")
    vocab = {token: index for index, token in enumerate(_vocab())}
    BertWordPieceTokenizer(vocab, lowercase=True).save(str(directory / "tokenizer.json"))
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=256,
                        type_vocab_size=2)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    return directory


def synthetic_pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Preference records whose chosen side carries MARKER; everything else is random words."""
    rng = random.Random(seed)
    plain = [w for w in WORDS if w != MARKER]

    def words(k: int) -> str:
        return " ".join(rng.choice(plain) for _ in range(k))

    records = []
    for _ in range(n):
        response = words(rng.randint(3, 12))
        marked = response.split()
        marked.insert(rng.randint(0, len(marked)), MARKER)
        records.append({"prompt": words(rng.randint(2, 10)), "chosen": " ".join(marked),
                        "rejected": words(rng.randint(3, 12))})
    return records


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


TINY_TRAINING = ["--max-length", "64", "--min-prompt-tokens", "8", "--max-train-pairs", "64",
                 "--batch-size", "8", "--grad-accum", "1", "--checkpoint-every", "4",
                 "--no-freeze-embeddings", "--eval-batch-tokens", "8192", "--no-pool",
                 "--relevance", "0", "--truncation", "0", "--dismissal", "0", "--repetition", "0",
                 "--no-length-term", "--length-decorrelation", "0"]


@pytest.fixture(scope="session")
def trained_run(tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`alignserve train reward` on the tiny model, the real data and a file of our own."""
    from training.cli import main

    output = tmp_path_factory.mktemp("run")
    own = write_jsonl(output.parent / "own.jsonl", [*synthetic_pairs(300, seed=5), {"prompt": 1}])
    assert main(["train", "reward", "--output", str(output), "--backbone", str(tiny_backbone),
                 "--train-data", str(own), "--skip-invalid", *TINY_TRAINING]) == 0
    return output


@pytest.fixture(scope="session")
def tiny_artifact(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny trained model exported (fused fp32, fp16, int8 if accurate) with a manifest."""
    from models.inputs import PairEncoder
    from models.manifest import Manifest
    from training import export, int8_gate
    from training.data.reward_data import load_reward_data
    from training.pairs import EncodedPairs

    checkpoint = trained_run / "model"
    manifest = Manifest.load(checkpoint)
    encoder = PairEncoder.from_file(checkpoint / "tokenizer.json", manifest.input)
    validation = EncodedPairs.build(encoder, load_reward_data(
        other_sources=False).splits["validation"][:200])
    out = tmp_path_factory.mktemp("artifact")
    export.export_checkpoint(checkpoint, out, "tiny-reward",
                             int8_gate.pairwise_check(validation.chosen, validation.rejected)
                             ).save(out)
    return out


TINY_CLASSIFIER = ["--max-length", "32", "--max-train-texts", "256", "--batch-size", "16",
                   "--grad-accum", "1", "--checkpoint-every", "8", "--epochs", "1",
                   "--eval-batch-tokens", "16384"]


@pytest.fixture(scope="session")
def moderation_run(tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`alignserve train moderation` on the tiny model, the real data and a file of our own."""
    from training.cli import main

    output = tmp_path_factory.mktemp("moderation")
    own = write_jsonl(output.parent / "own-moderation.jsonl", [
        {"text": f"you are a {w} person, {i}", "labels": {"offensive": int(w == "terrible")}}
        for i, w in enumerate(["terrible", "good", "great", "awful"] * 25)])
    assert main(["train", "moderation", "--output", str(output), "--backbone",
                 str(tiny_backbone), "--train-data", str(own), "--counter-speech", "0.05",
                 *TINY_CLASSIFIER]) == 0
    return output


@pytest.fixture(scope="session")
def intent_run(tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`alignserve train intent --dataset clinc150` on the tiny model (out-of-scope included)."""
    from training.cli import main

    output = tmp_path_factory.mktemp("intent")
    assert main(["train", "intent", "--dataset", "clinc150", "--output", str(output),
                 "--backbone", str(tiny_backbone), *TINY_CLASSIFIER]) == 0
    return output


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """One private PostgreSQL server for the session (tests/postgres.py)."""
    from tests.postgres import postgres

    with postgres() as dsn:
        yield dsn


def fresh_database(server_dsn: str) -> str:
    """A new, empty database on the test server; its DSN."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_dsn.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def feedback_backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Where a feedback store lives, once per back-end: {"path": ...} or {"dsn": ...}."""
    if request.param == "sqlite":
        return {"path": str(tmp_path / "feedback.sqlite3")}
    return {"dsn": fresh_database(request.getfixturevalue("postgres_server"))}
