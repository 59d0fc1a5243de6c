"""The trainer on a tiny random BERT: it learns, it changes parameters, it resumes exactly."""

from __future__ import annotations

import shutil
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.inputs import PairEncoder
from models.manifest import InputFormat
from tests.conftest import synthetic_pairs
from training.config import TrainConfig
from training.data.records import PreferencePair
from training.modeling import ScoringModel, pooling_mask, set_dropout
from training.pairs import EncodedPairs, RewardObjective, bradley_terry_loss, score_pairs
from training.run import Run
from training.trainer import CHECKPOINT, Trainer, plan_batches

CONFIG = TrainConfig(max_length=48, min_prompt_tokens=8, batch_size=8, grad_accum=1, lr=3e-3,
                     head_lr=3e-3, epochs=3.0, warmup_ratio=0.1, center_rewards=0.0,
                     freeze_embeddings=False, checkpoint_every=5, seed=1)


def _pairs(n: int, seed: int) -> list[PreferencePair]:
    return [PreferencePair(r["prompt"], r["chosen"], r["rejected"])
            for r in synthetic_pairs(n, seed)]


def _trainer(backbone: Path, out: Path, config: TrainConfig = CONFIG, n: int = 96
             ) -> tuple[Trainer, PairEncoder]:
    encoder = PairEncoder.from_file(backbone / "tokenizer.json",
                                    InputFormat(max_length=config.max_length,
                                                min_prompt_tokens=config.min_prompt_tokens))
    encoded = EncodedPairs.build(encoder, _pairs(n, seed=0))
    torch.manual_seed(config.seed)
    model = ScoringModel.from_backbone(backbone)
    plan = plan_batches(encoded.lengths(), config.batch_size, config.epochs, config.seed)
    return Trainer(model, plan, lambda idx: encoded.collate(idx, encoder.pad_id),
                   RewardObjective(config.use_margin, config.center_rewards), config,
                   out), encoder


def test_bradley_terry_loss_by_hand() -> None:
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    expected = -(torch.log(torch.sigmoid(torch.tensor(1.0))) +
                 torch.log(torch.sigmoid(torch.tensor(-1.0)))) / 2
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected.item())
    with_margin = bradley_terry_loss(chosen, rejected, margin=torch.tensor([1.0, 0.0]))
    assert with_margin.item() == pytest.approx(
        -(np.log(0.5) + np.log(1 / (1 + np.e))) / 2, rel=1e-5)
    centred = bradley_terry_loss(chosen, rejected, center=0.1)
    assert centred.item() == pytest.approx(expected.item() + 0.1 * (9 + 1) / 2)


def test_plan_is_deterministic_grouped_and_complete() -> None:
    lengths = [int(x) for x in np.random.default_rng(0).integers(5, 100, 1000)]
    plan = plan_batches(lengths, 8, 1.0, seed=3)
    assert plan == plan_batches(lengths, 8, 1.0, seed=3)
    assert plan != plan_batches(lengths, 8, 1.0, seed=4)
    assert sorted(i for batch in plan for i in batch) == list(range(1000))
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in plan])
    assert spread < 10  # batches hold similar lengths: little padding
    assert len(plan_batches(lengths, 8, 2.5, seed=3)) == round(2.5 * 125)


def test_learns_a_marked_preference_and_changes_parameters(tiny_backbone: Path,
                                                           tmp_path: Path) -> None:
    trainer, encoder = _trainer(tiny_backbone, tmp_path / "ckpt")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    history = trainer.fit()
    after = trainer.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "head.weight" in changed
    assert any(k.startswith("encoder.encoder.layer.") for k in changed)
    first, last = np.mean([h["loss"] for h in history[:5]]), np.mean(
        [h["loss"] for h in history[-5:]])
    assert last < first * 0.5, (first, last)
    held_out = _pairs(200, seed=99)
    chosen, rejected = score_pairs(trainer.model, encoder, held_out)
    assert (chosen > rejected).mean() > 0.9


def test_resume_equals_an_uninterrupted_run(tiny_backbone: Path, tmp_path: Path) -> None:
    config = CONFIG.with_overrides(epochs=1.0, checkpoint_every=3)
    whole, _ = _trainer(tiny_backbone, tmp_path / "a", config, n=64)
    whole.fit()
    interrupted, _ = _trainer(tiny_backbone, tmp_path / "b", config, n=64)
    interrupted.fit(stop_at=4)
    assert interrupted.step == 4
    resumed, _ = _trainer(tiny_backbone, tmp_path / "b", config, n=64)
    resumed.fit(resume=True)
    assert resumed.step == whole.step
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]


def test_a_signal_checkpoints_and_resume_finishes_the_same_run(tiny_backbone: Path,
                                                             tmp_path: Path) -> None:
    config = CONFIG.with_overrides(epochs=1.0, checkpoint_every=100)  # no scheduled checkpoint
    whole, _ = _trainer(tiny_backbone, tmp_path / "a", config, n=64)
    whole.fit()
    interrupted, _ = _trainer(tiny_backbone, tmp_path / "b", config, n=64)
    objective = interrupted.objective
    calls = 0

    def send_sigterm_on_third_step(model, batch):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 3:
            signal.raise_signal(signal.SIGTERM)  # as Kubernetes or a CI timeout would
        return objective(model, batch)

    interrupted.objective = send_sigterm_on_third_step
    before = signal.getsignal(signal.SIGTERM)
    interrupted.fit()
    assert interrupted.step == 3  # the step in flight finished, then it stopped
    assert signal.getsignal(signal.SIGTERM) == before  # the handler in place before is back
    resumed, _ = _trainer(tiny_backbone, tmp_path / "b", config, n=64)
    resumed.fit(resume=True)
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_resume_refuses_other_settings_and_missing_checkpoint(tiny_backbone: Path,
                                                              tmp_path: Path) -> None:
    trainer, _ = _trainer(tiny_backbone, tmp_path / "c", CONFIG.with_overrides(epochs=1.0))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        trainer.fit(resume=True)
    trainer.fit(stop_at=2)
    other, _ = _trainer(tiny_backbone, tmp_path / "c", CONFIG.with_overrides(epochs=1.0, lr=1e-4))
    with pytest.raises(ValueError, match=r"other settings: \['lr'\]"):
        other.fit(resume=True)
    elsewhere, _ = _trainer(tiny_backbone, tmp_path / "c",
                            CONFIG.with_overrides(epochs=1.0, threads=1, device="cpu"))
    elsewhere.fit(resume=True)  # where a run computes is not what it computes
    assert elsewhere.step == elsewhere.total_steps


def test_a_checkpoint_older_than_a_setting_resumes_at_its_default(tiny_backbone: Path,
                                                                 tmp_path: Path) -> None:
    """A checkpoint written before a setting existed ran with that setting's default: it
    resumes a run at the default and refuses one that asks for another value."""
    config = CONFIG.with_overrides(epochs=1.0)
    trainer, _ = _trainer(tiny_backbone, tmp_path, config)
    trainer.fit(stop_at=2)
    path = tmp_path / CHECKPOINT
    state = torch.load(path, weights_only=False)
    del state["config"]["average_tail"], state["average"]
    torch.save(state, path)
    other, _ = _trainer(tiny_backbone, tmp_path, config.with_overrides(average_tail=0.5))
    with pytest.raises(ValueError, match=r"other settings: \['average_tail'\]"):
        other.fit(resume=True)
    same, _ = _trainer(tiny_backbone, tmp_path, config)
    same.fit(resume=True)
    assert same.step == same.total_steps


def test_length_term_learns_the_length_preference_and_stays_out_of_the_reward() -> None:
    from training.pairs import response_log_length, squared_correlation

    x, y = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([2.0, 4.0, 6.0, 8.5])
    assert squared_correlation(x, y).item() == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2,
                                                             rel=1e-5)
    batch = {"token_type_ids": torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])}
    assert response_log_length(batch).tolist() == pytest.approx([np.log(3), np.log(2)])

    class Longer(torch.nn.Module):  # a "model" whose reward ignores the text entirely
        head = torch.nn.Linear(1, 1)

        def forward(self, input_ids: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(input_ids), 1)

    objective = RewardObjective(use_margin=False, center=0.0, length_term=True,
                                decorrelation=1.0)
    long = {"token_type_ids": torch.tensor([[0, 1, 1, 1, 1, 1]]),
            "attention_mask": torch.ones(1, 6, dtype=torch.long)}
    short = {"token_type_ids": torch.tensor([[0, 1, 1, 0, 0, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 0, 0, 0]])}
    batch = {k: torch.cat([long[k], short[k]]) for k in long}
    batch |= {"input_ids": torch.ones(2, 6, dtype=torch.long), "margin": torch.zeros(1)}
    loss, stats = objective(Longer(), batch)  # type: ignore[arg-type]
    loss.backward()
    assert objective.length_weight.grad is not None and objective.length_weight.grad < 0
    assert stats["length_weight"] == 0.0  # it starts at zero; the gradient above raises it


def test_length_terms_can_leave_the_contrast_pairs_out(tiny_backbone: Path) -> None:
    """A contrast pair's length difference comes with its cue: without
    contrast_in_length_terms the length weight and the decorrelation read the human pairs
    only, and with it a contrast pair that prefers the shorter reply cancels a human pair that
    prefers the longer one."""
    class Constant(torch.nn.Module):  # every reply scores the same learnable value
        head = torch.nn.Linear(1, 1)

        def __init__(self) -> None:
            super().__init__()
            self.value = torch.nn.Parameter(torch.zeros(()))

        def forward(self, input_ids: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
            return self.value.expand(len(input_ids), 1)

    encoder = PairEncoder.from_file(tiny_backbone / "tokenizer.json",
                                    InputFormat(max_length=32, min_prompt_tokens=4))
    long, short = "hello there how are you today my friend", "hi"
    pairs = [PreferencePair("q", long, short, subset="helpful-base"),
             PreferencePair("q", short, long, subset="contrast/restatement")]
    encoded = EncodedPairs.build(encoder, pairs)
    assert encoded.human.tolist() == [1.0, 0.0]
    batch = encoded.collate([0, 1], encoder.pad_id)
    grads = {}
    for contrast_in in (True, False):
        objective = RewardObjective(use_margin=False, center=0.0, length_term=True,
                                    decorrelation=1.0, contrast_in_length_terms=contrast_in)
        loss, _ = objective(Constant(), batch)  # type: ignore[arg-type]
        loss.backward()
        grads[contrast_in] = float(objective.length_weight.grad)
    assert grads[True] == pytest.approx(0.0, abs=1e-6)  # the two pairs pull w apart
    assert grads[False] < 0  # the human pair alone: longer preferred, so w rises


def test_device_names_are_checked() -> None:
    from training.trainer import resolve_device

    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        CONFIG.with_overrides(device="tpu")  # refused with the settings, before any work
    with pytest.raises(ValueError, match=r"from 0 to 1, not -0\.1"):
        CONFIG.with_overrides(counter_speech=-0.1)
    with pytest.raises(ValueError, match=r"obfuscation is a share .* not 2"):
        CONFIG.with_overrides(obfuscation=2)
    with pytest.raises(ValueError, match=r"attention_entropy is a weight, 0 or more, not -0\.01"):
        CONFIG.with_overrides(attention_entropy=-0.01)
    with pytest.raises(ValueError, match="hate can also be read from edos, convabuse, not "
                                         "davidson"):
        CONFIG.with_overrides(hate_also_from="davidson")
    with pytest.raises(ValueError, match="brush_off_harmful is one of reply, skip, refusal"):
        CONFIG.with_overrides(brush_off_harmful="never")
    for kind, share in (("brush_off", -0.1), ("relevance", 1.5)):
        with pytest.raises(ValueError, match=rf"{kind} is a share .* not {share}"):
            CONFIG.with_overrides(**{kind: share})
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            resolve_device("cuda")
        assert resolve_device("auto").type == "cpu"


def test_layer_decay_gives_lower_layers_smaller_rates(tiny_backbone: Path,
                                                       tmp_path: Path) -> None:
    config = replace(CONFIG, layer_decay=0.5, lr=1e-3)
    trainer, _ = _trainer(tiny_backbone, tmp_path, config)
    rate = {id(p): g["initial_lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    named = dict(trainer.model.encoder.named_parameters())
    depth = trainer.model.encoder.config.num_hidden_layers
    top, bottom = f"encoder.layer.{depth - 1}.output.dense.weight", \
        "encoder.layer.0.output.dense.weight"
    assert rate[id(named[top])] == pytest.approx(1e-3)
    assert rate[id(named[bottom])] == pytest.approx(1e-3 * 0.5 ** (depth - 1))
    assert rate[id(named["embeddings.word_embeddings.weight"])] == pytest.approx(
        1e-3 * 0.5 ** depth)
    assert {rate[id(p)] for p in trainer.model.head.parameters()} == {config.head_lr}
    # the rate a step logs is the top layer's (the lowest layer's group comes first)
    now = next(g["lr"] for g in trainer.optimizer.param_groups
               if any(p is named[top] for p in g["params"]))
    assert trainer._optimizer_step()["lr"] == pytest.approx(now)
    # LayerNorm weights and biases keep no weight decay at every rate
    for group in trainer.optimizer.param_groups:
        if group["initial_lr"] != config.head_lr:
            assert {p.ndim >= 2 for p in group["params"]} == {group["weight_decay"] > 0}


def test_without_layer_decay_the_groups_are_those_of_before(tiny_backbone: Path,
                                                            tmp_path: Path) -> None:
    """Decay, no decay, head: so checkpoints written before layer_decay existed resume."""
    trainer, _ = _trainer(tiny_backbone, tmp_path)
    groups = trainer.optimizer.param_groups
    assert [(g["initial_lr"], g["weight_decay"]) for g in groups] == [
        (CONFIG.lr, CONFIG.weight_decay), (CONFIG.lr, 0.0), (CONFIG.head_lr, 0.0)]


def test_layer_decay_outside_its_range_is_refused() -> None:
    with pytest.raises(ValueError, match="layer_decay"):
        TrainConfig(layer_decay=0)
    with pytest.raises(ValueError, match="layer_decay"):
        TrainConfig(layer_decay=1.5)


def test_frozen_layers_stay_put_and_the_rest_train(tiny_backbone: Path, tmp_path: Path) -> None:
    """--freeze-layers 1: the lowest layer and every embedding keep their weights and are in no
    optimizer group; the layers above and the head move (its bias stays: a pair's loss reads
    only the difference of two rewards)."""
    trainer, _ = _trainer(tiny_backbone, tmp_path, replace(CONFIG, freeze_layers=1))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer._optimizer_step()
    optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    for name, parameter in trainer.model.named_parameters():
        frozen = name.startswith(("encoder.embeddings.", "encoder.encoder.layer.0."))
        assert (id(parameter) in optimised) is not frozen, name
        if frozen or name.startswith("encoder.encoder.layer.1.") or name == "head.weight":
            assert torch.equal(parameter, before[name]) is frozen, name
    with pytest.raises(ValueError, match="freeze_layers is a number of layers, 0 or more"):
        replace(CONFIG, freeze_layers=-1)
    depth = trainer.model.encoder.config.num_hidden_layers
    with pytest.raises(ValueError, match=f"the encoder has {depth} layers"):
        _trainer(tiny_backbone, tmp_path / "deeper", replace(CONFIG, freeze_layers=depth + 1))


def test_dropout_off_makes_training_passes_deterministic(tiny_backbone: Path) -> None:
    """--dropout 0: two passes in training mode agree (no mask noise on a pair's difference);
    the backbone's own dropout (None) still draws masks; the encoder's config records it."""
    inputs = {"input_ids": torch.tensor([[2, 60, 61, 62, 3]]),
              "attention_mask": torch.ones(1, 5, dtype=torch.long),
              "token_type_ids": torch.tensor([[0, 0, 1, 1, 1]])}
    kept = ScoringModel.from_backbone(tiny_backbone).train()
    assert kept.config.hidden_dropout_prob > 0
    torch.manual_seed(0)
    assert not torch.equal(kept(**inputs), kept(**inputs))

    off = ScoringModel.from_backbone(tiny_backbone).train()
    set_dropout(off.encoder, 0.0)
    assert torch.equal(off(**inputs), off(**inputs))
    assert off.config.hidden_dropout_prob == off.config.attention_probs_dropout_prob == 0.0


def test_pool_tokens_choose_what_a_pair_pools_and_the_choice_is_saved(tiny_backbone: Path,
                                                                     tmp_path: Path) -> None:
    """'response' pools segment B, 'all' every real token (a single text pools every token
    either way); a saved model keeps its choice, and a head saved before the choice existed
    (no metadata) loads as 'response', as it was trained."""
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    segments = torch.tensor([[0, 0, 1, 1, 1, 0]])
    assert pooling_mask(mask, segments).tolist() == [[0, 0, 1, 1, 1, 0]]
    assert pooling_mask(mask, segments, "all").tolist() == [[1, 1, 1, 1, 1, 0]]
    single = torch.zeros_like(segments)
    assert pooling_mask(mask, single).tolist() == pooling_mask(mask, single, "all").tolist()

    inputs = {"input_ids": torch.tensor([[2, 60, 61, 62, 3]]),
              "attention_mask": torch.ones(1, 5, dtype=torch.long),
              "token_type_ids": torch.tensor([[0, 0, 1, 1, 1]])}
    torch.manual_seed(0)
    model = ScoringModel.from_backbone(tiny_backbone, pool="all").eval()
    model.save(tmp_path / "all")
    loaded = ScoringModel.load(tmp_path / "all")
    assert loaded.pool == "all"
    assert torch.equal(loaded(**inputs), model(**inputs))
    model.pool = "response"
    assert not torch.equal(loaded(**inputs), model(**inputs))

    from safetensors.torch import save_file
    save_file(dict(model.head.state_dict()), str(tmp_path / "all" / "head.safetensors"))
    assert ScoringModel.load(tmp_path / "all").pool == "response"

    both = ScoringModel.from_backbone(tiny_backbone, pool="both").eval()
    assert both.head.in_features == 2 * both.config.hidden_size
    both.save(tmp_path / "both")
    assert torch.equal(ScoringModel.load(tmp_path / "both")(**inputs), both(**inputs))

    with pytest.raises(ValueError, match="pool"):
        ScoringModel.from_backbone(tiny_backbone, pool="cls")
    with pytest.raises(ValueError, match="pool_tokens"):
        TrainConfig(pool_tokens="cls")


def test_continuing_a_model_keeps_its_pooling_or_refuses_another(tiny_backbone: Path,
                                                                   tmp_path: Path) -> None:
    ScoringModel.from_backbone(tiny_backbone, pool="all").save(tmp_path / "trained")
    shutil.copy(tiny_backbone / "tokenizer.json", tmp_path / "trained")
    fmt = InputFormat(max_length=48, min_prompt_tokens=8)

    def run(**settings: str) -> Run:
        config = replace(CONFIG, backbone=str(tiny_backbone), **settings)
        return Run.start("reward", "r", None, config, tmp_path / "run", fmt)

    assert run().new_model().pool == "response"
    assert run(pool_tokens="all").new_model().pool == "all"
    init = str(tmp_path / "trained")
    assert run(init_from=init).new_model().pool == "all"
    with pytest.raises(ValueError, match="pools its all tokens"):
        run(init_from=init, pool_tokens="response").new_model()


def test_dropout_outside_its_range_is_refused() -> None:
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match="dropout"):
            TrainConfig(dropout=p)


def test_average_tail_serves_the_mean_of_the_last_steps_weights(tiny_backbone: Path,
                                                                tmp_path: Path) -> None:
    """The weights a run ends with are the mean of the weights after each of its last steps;
    the last step's own weights are not what is served."""
    config = CONFIG.with_overrides(epochs=1.0, average_tail=0.5)
    trainer, _ = _trainer(tiny_backbone, tmp_path, config, n=64)
    assert (trainer.total_steps, trainer.average_from) == (8, 4)
    snapshots: list[dict[str, torch.Tensor]] = []
    one_step = trainer._optimizer_step

    def recorded() -> dict[str, float]:
        record = one_step()
        snapshots.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
        return record

    trainer._optimizer_step = recorded  # type: ignore[method-assign]
    trainer.fit()
    served = trainer.model.state_dict()
    for key, value in served.items():
        if value.is_floating_point():
            mean = torch.stack([s[key] for s in snapshots[4:]]).mean(0)
            assert torch.allclose(value, mean, atol=1e-6), key
        else:
            assert torch.equal(value, snapshots[-1][key]), key
    assert not torch.equal(served["head.weight"], snapshots[-1]["head.weight"])


def test_resume_with_averaging_equals_an_uninterrupted_run(tiny_backbone: Path,
                                                           tmp_path: Path) -> None:
    """The running average is in the checkpoint: a run stopped inside the averaged tail and
    resumed ends with the same averaged weights as one that was never stopped."""
    config = CONFIG.with_overrides(epochs=1.0, average_tail=0.5, checkpoint_every=100)
    whole, _ = _trainer(tiny_backbone, tmp_path / "a", config, n=64)
    whole.fit()
    interrupted, _ = _trainer(tiny_backbone, tmp_path / "b", config, n=64)
    interrupted.fit(stop_at=6)
    resumed, _ = _trainer(tiny_backbone, tmp_path / "b", config, n=64)
    resumed.fit(resume=True)
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_average_tail_outside_its_range_is_refused() -> None:
    for share in (-0.1, 1.5):
        with pytest.raises(ValueError, match="average_tail"):
            TrainConfig(average_tail=share)
