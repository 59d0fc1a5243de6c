"""The real backbone on real data (slow: loads all-MiniLM-L6-v2 from its PyPI package)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.inputs import PairEncoder
from models.manifest import InputFormat
from training.data import catalogue
from training.modeling import ScoringModel, resolve_backbone
from training.pairs import EncodedPairs, RewardObjective, model_inputs
from training.scoring import to_torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm() -> Path:
    return resolve_backbone("minilm")


def test_real_pairs_train_and_token_types_matter(minilm: Path, tmp_path: Path) -> None:
    encoder = PairEncoder.from_file(minilm / "tokenizer.json", InputFormat(max_length=128))
    pairs = catalogue.load("hh-rlhf/helpful-base").pairs[:8]
    encoded = EncodedPairs.build(encoder, pairs)
    assert all(len(item) <= 128 for item in encoded.chosen + encoded.rejected)
    torch.manual_seed(0)
    model = ScoringModel.from_backbone(minilm).eval()
    batch = encoded.collate(list(range(8)), encoder.pad_id)
    inputs = model_inputs(batch)
    with torch.no_grad():
        rewards = model(**inputs)
        without_types = model(**{**inputs, "token_type_ids": torch.zeros_like(
            inputs["token_type_ids"])})
    assert rewards.shape == (16, 1)
    assert not torch.allclose(rewards, without_types, atol=1e-4)  # dropping them changes scores

    model.train()
    objective = RewardObjective(use_margin=True, center=0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    before = model.encoder.encoder.layer[0].attention.self.query.weight.clone()
    loss, stats = objective(model, batch)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and 0 <= stats["accuracy"] <= 1
    assert not torch.equal(before, model.encoder.encoder.layer[0].attention.self.query.weight)


def test_single_and_batched_scores_agree(minilm: Path) -> None:
    """Padding must not move a score: the service will batch items of different lengths."""
    encoder = PairEncoder.from_file(minilm / "tokenizer.json", InputFormat(max_length=128))
    model = ScoringModel.from_backbone(minilm).eval()
    items = encoder.encode_batch(["hi", "how do I bake bread at home?"],
                                 ["hello!", "Mix flour, water, salt and yeast, then wait."])
    from models.inputs import pad_batch

    with torch.no_grad():
        batched = model(**to_torch(pad_batch(items))).squeeze(-1)
        alone = torch.cat([model(**to_torch(pad_batch([i]))).squeeze(-1) for i in items])
    assert torch.allclose(batched, alone, atol=1e-5)
