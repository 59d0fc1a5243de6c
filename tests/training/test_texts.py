"""Classifier objectives, calibration, thresholds and metrics against hand-computed cases, and a
synthetic separable task learned by the tiny BERT."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.inputs import InputFormat, PairEncoder
from training.class_metrics import average_precision, binary_metrics, macro_f1, roc_auc
from training.config import TrainConfig
from training.data.labelled import TextExample
from training.metrics import sigmoid
from training.modeling import ScoringModel
from training.temperature import fit_softmax_temperature
from training.texts import (
    UNKNOWN,
    EncodedTexts,
    attention_entropy,
    best_f1_threshold,
    masked_bce,
    multilabel_objective,
    out_of_scope_threshold,
    predict_logits,
)
from training.trainer import Trainer, plan_batches


def test_unknown_labels_do_not_move_the_loss() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]], requires_grad=True)
    known = torch.tensor([[1, UNKNOWN], [0, UNKNOWN]])
    flipped = torch.tensor([[1, 1], [0, 0]])  # the unknown column means nothing either way
    loss = masked_bce(logits, known)
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(0.5))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert logits.grad is not None and torch.all(logits.grad[:, 1] == 0)
    assert masked_bce(logits, flipped).item() != pytest.approx(loss.item())
    assert masked_bce(logits, torch.full((2, 2), UNKNOWN)).item() == 0.0


def test_attention_entropy_by_hand() -> None:
    """Uniform attention over n real tokens has entropy log n, one-hot has 0; padding, as a
    query or as a key, counts for nothing; heads are averaged before the entropy."""
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    uniform = mask[:, None, None, :].float().expand(2, 2, 4, 4)
    uniform = uniform / uniform.sum(-1, keepdim=True)
    one_hot = torch.zeros(2, 2, 4, 4)
    one_hot[..., 0] = 1.0
    assert attention_entropy([uniform], mask).item() == pytest.approx(
        (math.log(4) + math.log(2)) / 2, rel=1e-6)
    assert attention_entropy([one_hot], mask).item() == pytest.approx(0.0, abs=1e-6)
    assert attention_entropy([uniform, one_hot], mask).item() == pytest.approx(
        (math.log(4) + math.log(2)) / 2, rel=1e-6)  # summed over the layers
    # two heads on different single words: their mean attends to two, log 2
    split = one_hot.clone()
    split[:, 1] = 0.0
    split[:, 1, :, 1] = 1.0
    assert attention_entropy([split], mask).item() == pytest.approx(math.log(2), rel=1e-6)
    # a padded query's row (what the model attends from padding) is ignored
    noisy = uniform.clone()
    noisy[1, :, 2:, :] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert attention_entropy([noisy], mask).item() == pytest.approx(
        attention_entropy([uniform], mask).item(), rel=1e-6)


def test_the_entropy_term_reaches_the_attention(tiny_backbone: Path) -> None:
    """With a weight, the objective is the cross-entropy less weight x entropy, read from the
    model's own attention, and its gradient moves the attention's weights."""
    encoder = PairEncoder.from_file(tiny_backbone / "tokenizer.json",
                                    InputFormat(kind="text", max_length=16, min_prompt_tokens=0))
    encoded = EncodedTexts.multilabel(encoder, [TextExample("the day was good", {"good": 1}),
                                                TextExample("a bad book", {"good": 0})],
                                      ["good"])
    batch = encoded.collate([0, 1], encoder.pad_id)
    torch.manual_seed(0)
    model = ScoringModel.from_backbone(tiny_backbone, num_outputs=1)
    model.eval()  # no dropout: both objectives see the same forward pass
    plain, _ = multilabel_objective()(model, batch)
    loss, stats = multilabel_objective(0.5)(model, batch)
    assert stats["attention_entropy"] > 0
    assert loss.item() == pytest.approx(plain.item() - 0.5 * stats["attention_entropy"],
                                        rel=1e-5)
    loss.backward()
    query = next(p for n, p in model.named_parameters() if "attention.self.query.weight" in n)
    assert query.grad is not None and query.grad.abs().sum() > 0


def test_average_precision_and_roc_auc_by_hand() -> None:
    probs = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([1, 0, 1, 0])
    # precision at the positives: 1/1 and 2/3
    assert average_precision(probs, labels) == pytest.approx((1 + 2 / 3) / 2)
    # pairs (pos, neg): (0.9>0.8), (0.9>0.6), (0.7<0.8), (0.7>0.6) -> 3/4
    assert roc_auc(probs, labels) == pytest.approx(0.75)
    assert roc_auc(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)
    at = binary_metrics(probs, labels, threshold=0.75)
    assert at["precision"] == pytest.approx(0.5) and at["recall"] == pytest.approx(0.5)
    assert at["f1"] == pytest.approx(0.5) and at["flag_rate"] == pytest.approx(0.5)


def test_threshold_choices_by_hand() -> None:
    probs = np.array([0.95, 0.9, 0.6, 0.4, 0.2])
    labels = np.array([1, 1, 0, 1, 0])
    # F1 = 2 tp / (flagged + positives): 0.95: 2/4; 0.9: 4/5; 0.6: 4/6; 0.4: 6/7; 0.2: 6/8
    assert best_f1_threshold(probs, labels) == pytest.approx(0.4)
    assert best_f1_threshold(np.array([0.9, 0.9, 0.1]), np.array([1, 0, 0])) == 0.9  # a tie
    confidence = np.array([0.9, 0.8, 0.3, 0.7, 0.2])
    in_scope = np.array([True, True, True, False, False])
    correct = np.array([True, False, True, False, False])
    # t=0.8 accepts rows 0,1: in-scope 1/3, oos recall 2/2 -> 0.667; t=0.3: 2/3 and 1/2 -> 0.583
    assert out_of_scope_threshold(confidence, in_scope, correct) == pytest.approx(0.8)
    assert macro_f1(np.array([0, 1, 1]), np.array([0, 1, 0]), 2) == pytest.approx(
        (2 / 3 + 2 / 3) / 2)


def test_operating_curve_and_its_points_by_hand() -> None:
    from training.texts import operating_curve

    probs = np.array([0.95, 0.9, 0.6, 0.6, 0.2])
    labels = np.array([1, 1, 0, 1, 0])
    curve = operating_curve(probs, labels)
    # flagged >= t: 0.95 -> 1/1, 0.9 -> 2/2, 0.6 (a tie of two) -> 3/4, 0.2 -> 3/5
    assert curve.thresholds == [0.95, 0.9, 0.6, 0.2]
    assert curve.precision == pytest.approx([1.0, 1.0, 0.75, 0.6])
    assert curve.recall == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    assert (curve.n, curve.positives) == (5, 3)
    assert curve.threshold_for(0.9) == 0.9  # the most recall at that precision
    assert curve.threshold_for(0.7) == 0.6 and curve.threshold_for(0.5) == 0.2
    thin = operating_curve(np.linspace(1, 0, 1000), np.arange(1000) % 2, points=50)
    assert len(thin.thresholds) == 50 and thin.thresholds[0] == 1 and thin.thresholds[-1] == 0


def test_softmax_temperature_recovers_a_known_scale() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 5)) * 2
    labels = np.array([rng.choice(5, p=np.exp(z) / np.exp(z).sum()) for z in true_logits])
    assert fit_softmax_temperature(true_logits * 3, labels) == pytest.approx(3, rel=0.1)


def test_a_separable_multilabel_task_is_learned(tiny_backbone: Path) -> None:
    """Category 0 is 'contains excellent', category 1 'contains terrible'; half the examples
    leave category 1 unknown. The tiny BERT must reach a high AUPRC on held-out texts."""
    rng = np.random.default_rng(1)
    words = ["the", "day", "book", "music", "food", "travel", "time", "money", "order", "card"]

    def example(i: int) -> TextExample:
        good, bad = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        text = " ".join(rng.choice(words, 6)) + (" excellent" if good else "") + (
            " terrible" if bad else "")
        labels = {"good": int(good)} | ({"bad": int(bad)} if i % 2 else {})
        return TextExample(text, labels)

    train, held_out = [example(i) for i in range(800)], [example(i) for i in range(200)]
    encoder = PairEncoder.from_file(tiny_backbone / "tokenizer.json",
                                    InputFormat(kind="text", max_length=16, min_prompt_tokens=0))
    encoded = EncodedTexts.multilabel(encoder, train, ["good", "bad"])
    torch.manual_seed(0)
    model = ScoringModel.from_backbone(tiny_backbone, num_outputs=2)
    config = TrainConfig(batch_size=16, grad_accum=1, lr=1e-3, head_lr=1e-2, epochs=5,
                         freeze_embeddings=False, checkpoint_every=10_000)
    trainer = Trainer(model, plan_batches(encoded.lengths(), 16, 5, 0),
                      lambda idx: encoded.collate(idx, encoder.pad_id), multilabel_objective(),
                      config, Path("/tmp/alignserve-test-no-checkpoints"))
    trainer.fit()
    probs = sigmoid(predict_logits(model, encoder, [e.text for e in held_out]))
    for k, name in enumerate(["good", "bad"]):
        rows = [i for i, e in enumerate(held_out) if name in e.labels]
        labels = np.array([held_out[i].labels[name] for i in rows])
        assert average_precision(probs[rows, k], labels) > 0.9, name
