"""`alignserve import`: small random models of each family (BERT, RoBERTa, DeBERTa-v2/v3,
ELECTRA), built from configs, round-trip through the parity gate and the store, and a real
server answers with the scores transformers itself gives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models import store
from models.inputs import render_prompt
from models.manifest import Manifest, Task
from models.session import open_session, run
from service.client import Client
from service.fronts import front_for
from service.local import serving
from tests.conftest import WORDS, _vocab
from training.cli import main

MODERATION_LABELS = ["toxic", "insult", "threat"]
INTENT_LABELS = ["balance", "card_lost", "refund", "greeting"]
# (family, task): every family as a reward model (the pair join differs most), and one family
# per classifier task.
IMPORTS = [("bert", "reward"), ("roberta", "reward"), ("deberta-v2", "reward"),
           ("electra", "reward"), ("roberta", "moderation"), ("electra", "intent")]
PROMPT = "how can i help you with my card ?"
RESPONSES = ["thanks , the refund is good", "a terrible awful answer to the question"]
TEXTS = ["hello , my card is lost", "you are awful and terrible " * 2]


def tokenizer_for(family: str, directory: Path) -> None:
    """tokenizer.json: BERT's WordPiece for the [CLS]/[SEP] families; a byte-level BPE with
    RoBERTa's <s> ... </s></s> ... </s> template for RoBERTa."""
    from tokenizers import ByteLevelBPETokenizer, Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer
    from tokenizers.processors import RobertaProcessing

    if family != "roberta":
        vocab = {token: index for index, token in enumerate(_vocab())}
        BertWordPieceTokenizer(vocab, lowercase=True).save(str(directory / "tokenizer.json"))
        return
    bpe = ByteLevelBPETokenizer()
    sentences = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))]
    bpe.train_from_iterator(sentences, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer: Tokenizer = bpe._tokenizer
    tokenizer.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer.save(str(directory / "tokenizer.json"))


def source_model(family: str, task: str, directory: Path) -> Path:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    directory.mkdir(parents=True)
    tokenizer_for(family, directory)
    labels = {"reward": ["reward"], "moderation": MODERATION_LABELS,
              "intent": INTENT_LABELS}[task]
    size = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "vocab_size": 400,
            "id2label": dict(enumerate(labels)), "label2id": {k: i for i, k in enumerate(labels)}}
    extra: dict[str, Any] = {
        "bert": {"type_vocab_size": 2, "max_position_embeddings": 256},
        "electra": {"type_vocab_size": 2, "max_position_embeddings": 256, "embedding_size": 16},
        "roberta": {"type_vocab_size": 1, "max_position_embeddings": 258, "pad_token_id": 1,
                    "bos_token_id": 0, "eos_token_id": 2},
        # DeBERTa-v3's shape: no segments, relative positions with buckets.
        "deberta-v2": {"type_vocab_size": 0, "max_position_embeddings": 256,
                       "relative_attention": True, "position_buckets": 32,
                       "pos_att_type": ["p2c", "c2p"], "norm_rel_ebd": "layer_norm",
                       "share_att_key": True}}[family]
    if task == "moderation":
        extra["problem_type"] = "multi_label_classification"
    config = AutoConfig.for_model(family, **size, **extra)
    torch.manual_seed(len(family))
    AutoModelForSequenceClassification.from_config(config).save_pretrained(directory)
    return directory


class Imports:
    """Each (family, task) imported into the store once, when a test first asks for it."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.done: dict[tuple[str, str], dict[str, Any]] = {}

    def __getitem__(self, key: tuple[str, str]) -> dict[str, Any]:
        if key not in self.done:
            family, task = key
            root = self.factory.mktemp(f"import-{family}-{task}")
            source = source_model(family, task, root / "source")
            name = f"imp-{family}-{task}".replace("deberta-v2", "deberta")
            # 64 tokens: the calibration and the int8 check read every validation input.
            assert main(["import", str(source), "--task", task, "--name", name,
                         "--max-length", "64", "--output", str(root / "run")]) == 0
            version = Manifest.load(root / "run" / "artifact").version
            self.done[key] = {"source": source, "tag": f"{name}:{version}"}
        return self.done[key]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Imports:
    return Imports(tmp_path_factory)


def transformers_scores(source: Path, task: str, inputs: list[Any]) -> np.ndarray:
    """What transformers itself gives: its tokenizer (the pair through the tokenizer's own
    template) and its model."""
    from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast

    model = AutoModelForSequenceClassification.from_pretrained(source).eval()
    segments = (getattr(model.config, "type_vocab_size", 0) or 0) > 1
    # As the family's own tokenizer class does: segment ids only for models that have them.
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(source / "tokenizer.json"),
        model_input_names=["input_ids", "attention_mask"] + ["token_type_ids"] * segments)
    out = []
    for item in inputs:
        encoded = (tokenizer(render_prompt(item[0]), item[1], return_tensors="pt")
                   if task == "reward" else tokenizer(item, return_tensors="pt"))
        assert encoded["input_ids"].shape[1] <= 64  # within the imported length: nothing cut
        with torch.inference_mode():
            logits = model(**encoded).logits[0].numpy()
        out.append(logits)
    logits = np.stack(out)
    if task == "moderation":
        return 1 / (1 + np.exp(-logits))
    if task == "intent":
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return logits[:, 0]


@pytest.mark.parametrize(("family", "task"), IMPORTS)
def test_import_round_trips_through_the_gate_and_the_store(
        imported: Imports, family: str, task: str) -> None:
    entry = imported[(family, task)]
    artifact = store.get(entry["tag"])
    manifest = artifact.manifest
    assert manifest.parity_max_diff["fp32"] <= 1e-4  # the parity gate ran and passed
    assert manifest.training["imported"]["model_type"] == family
    assert manifest.quantisation["int8"]["accepted"] in ("yes", "no")
    expected_labels = {"reward": [], "moderation": MODERATION_LABELS,
                       "intent": INTENT_LABELS}[task]
    assert manifest.labels == expected_labels
    assert manifest.input.template == ("roberta-pair" if family == "roberta" else "bert-pair")
    if task == "reward":
        assert manifest.calibration is not None and manifest.normalisation is not None
        assert manifest.calibration.fitted_on == "pooled preference validation"
    # The engine the service runs, on the stored fp32 graph, against transformers' own scores.
    front = front_for(artifact.path, manifest)
    session = open_session(artifact.path / "model.onnx")
    if task == "reward":
        items = front.prepare([PROMPT] * len(RESPONSES), RESPONSES)  # type: ignore[attr-defined]
        served = run(session, items, pad_id=front.encoder.pad_id)[:, 0]
        inputs: list[Any] = [(PROMPT, r) for r in RESPONSES]
    else:
        items = front.prepare_texts(TEXTS)
        logits = run(session, items, pad_id=front.encoder.pad_id)
        served = (1 / (1 + np.exp(-logits)) if manifest.task is Task.multilabel else
                  np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True))
        inputs = TEXTS
    expected = transformers_scores(entry["source"], task, inputs)
    np.testing.assert_allclose(served, expected, atol=1e-4)


def test_import_refuses_what_it_cannot_serve(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    source = source_model("bert", "intent", tmp_path / "intent")
    assert main(["import", str(source), "--task", "reward", "--name", "x",
                 "--output", str(tmp_path / "run")]) == 2
    assert "a reward model has one output" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "nothing"), "--task", "intent", "--name", "x"]) == 2
    assert "no config.json" in capsys.readouterr().err


@pytest.fixture(scope="module")
def imported_server(imported: Imports,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("serve-imported") / "serve.log"
    with serving(log, ALIGNSERVE_REWARD_MODEL=imported[("deberta-v2", "reward")]["tag"],
                 ALIGNSERVE_MODERATION_MODEL=imported[("roberta", "moderation")]["tag"],
                 ALIGNSERVE_INTENT_MODEL=imported[("electra", "intent")]["tag"],
                 ALIGNSERVE_GRAPH="fp32") as url:
        yield url


def test_a_real_server_serves_imported_models_as_transformers_scores_them(
        imported: Imports, imported_server: str) -> None:
    with Client(imported_server) as client:
        rewards = client.score([{"prompt": PROMPT, "response": r} for r in RESPONSES]).results
        moderated = client.moderate(TEXTS).results
        classified = client.classify(TEXTS, top_k=len(INTENT_LABELS)).results
    np.testing.assert_allclose(
        [r.reward for r in rewards],
        transformers_scores(imported[("deberta-v2", "reward")]["source"], "reward",
                            [(PROMPT, r) for r in RESPONSES]), atol=1e-4)
    expected = transformers_scores(imported[("roberta", "moderation")]["source"], "moderation",
                                   TEXTS)
    for row, answer in zip(expected, moderated, strict=True):
        assert [answer.categories[c].probability for c in MODERATION_LABELS] == \
            pytest.approx(row.tolist(), abs=1e-4)
    expected = transformers_scores(imported[("electra", "intent")]["source"], "intent", TEXTS)
    for row, answer in zip(expected, classified, strict=True):
        got = {i.label: i.probability for i in answer.top}
        assert [got[label] for label in INTENT_LABELS] == pytest.approx(row.tolist(), abs=1e-4)
