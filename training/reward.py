"""`alignserve train reward`: what is particular to the reward model.

Data: every pooled preference source, weighted, plus label-free contrast pairs
(training/data/reward_data.py, training/data/contrast.py). Objective: Bradley-Terry with a
learnt length term that is dropped at serving (training/pairs.py). Calibration: one temperature
and the reward normalisation, on the pooled validation split. Evaluation: every source's test
split, the held-out sources and the behavioural suite, each beside the "longer reply wins" rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.inputs import InputFormat, PairEncoder
from models.manifest import Calibration, Normalisation, Task
from training import behaviour, report
from training.config import TrainConfig
from training.data.contrast import KINDS as CONTRAST_KINDS
from training.data.contrast import Whole, contrast_pairs
from training.data.records import PreferencePair
from training.data.reward_data import (
    HH,
    POOLED,
    SOURCE_WEIGHTS,
    RewardData,
    load_reward_data,
    source_of,
    validation_parts,
    weighted,
)
from training.data.split import sample
from training.evaluate import SetResult, evaluate_sets
from training.int8_gate import save_validation_scores
from training.metrics import pairwise_metrics
from training.modeling import AnyModel
from training.pairs import EncodedPairs, RewardObjective, score_pairs
from training.run import Run, RunResult
from training.temperature import fit_temperature

SPLIT_RULE = ("each pooled source carved 80/10/10 into train/validation/test by a sha256 of its "
              "group (hh-rlhf and Open-Assistant: the first user turn; the others: the "
              "question), so no conversation or question lands in two splits; HHH and "
              "UKPConvArg are held out whole")
CONTRAST_CHECK, CHECK_PER_KIND = "contrast (validation)", 100
COLUMNS = ("accuracy", "longer_wins", "acc_chosen_shorter", "acc_chosen_cut", "acc_rejected_cut",
           "length_corr", "log_loss", "ece", "n")


@dataclass
class Calibrated:
    margins: np.ndarray
    temperature: float
    normalisation: Normalisation
    rewards: np.ndarray  # every validation pair's chosen, then every rejected


def input_format(config: TrainConfig) -> InputFormat:
    """How the reward model that `config` trains reads a (prompt, response) pair."""
    return InputFormat(max_length=config.max_length, min_prompt_tokens=config.min_prompt_tokens,
                       cut_marker=config.cut_marker,
                       response_tail_tokens=config.response_tail_tokens)


def train_reward(config: TrainConfig, output: Path, data_dir: Path | None = None,
                 name: str = "reward", preset: str | None = None, resume: bool = False,
                 stop_at: int | None = None, train_data: Sequence[Path] = (),
                 skip_invalid: bool = False, train_only: Sequence[Path] = ()
                 ) -> RunResult | None:
    """Run everything; returns None when stopped early (at `stop_at`, or by Ctrl-C or SIGTERM)
    with a checkpoint to --resume from."""
    run = Run.start("reward", name, preset, config, output, input_format(config))
    data = load_reward_data(data_dir, train_data, skip_invalid, train_only=train_only)
    train_pairs = training_pairs(data.splits["train"], config, seen_whole(run.encoder))
    encoded = EncodedPairs.build(run.encoder, train_pairs)
    run.lap("load")

    model = run.new_model()
    objective = RewardObjective(config.use_margin, config.center_rewards, config.length_term,
                                config.length_decorrelation, config.contrast_in_length_terms)
    trained = run.train(model, encoded, "pairs", objective, resume, stop_at)
    if trained is None:
        return None
    trainer, history = trained

    calibrated = calibrate(model, run.encoder, data.splits["validation"],
                           config.eval_batch_tokens)
    run.lap("calibrate")
    results = evaluate_sets(model, run.encoder,
                            {**data.eval_sets, CONTRAST_CHECK: contrast_check(data)},
                            calibrated.temperature, config.eval_batch_tokens)
    metrics = {**validation_metrics(data, calibrated),
               **{k: r.metrics for k, r in results.items()}}
    run.lap("evaluate")

    manifest = run.manifest(
        task=Task.reward, metrics=metrics, data=data.fingerprints,
        calibration=Calibration(temperature=calibrated.temperature,
                                fitted_on="pooled validation split", n=len(calibrated.margins)),
        normalisation=calibrated.normalisation)
    summary = run.summary(manifest, data.fingerprints, {
        "rule": SPLIT_RULE, **{k: len(v) for k, v in data.splits.items()},
        "train_used": len(train_pairs)}, trainer, history,
        write_plots(output, history, calibrated, results[HH]))
    summary |= {
        "training_mix": {"weights": {k: {"weight": w, "why": why}
                                     for k, (w, why) in SOURCE_WEIGHTS.items()},
                         "pairs_by_source": dict(Counter(
                             p.subset if p.subset.startswith("contrast/") else source_of(p)
                             for p in train_pairs))},
        "length_weight": float(objective.length_weight.detach()),
        "behaviour": behaviour_summary(metrics),
        "calibration": {"temperature": calibrated.temperature,
                        **calibrated.normalisation.model_dump()}}
    result = run.finish(model, manifest, summary, metrics, [(COLUMNS, list(metrics))])
    # The export's int8 check reads these as fp32's side instead of scoring the split again.
    validation = EncodedPairs.build(run.encoder, data.splits["validation"])
    save_validation_scores(run.model_dir, [*validation.chosen, *validation.rejected],
                           calibrated.rewards)
    suite = summary["behaviour"]
    print(f"temperature {calibrated.temperature:.3f}; behavioural suite "
          f"{suite['overall']:.1%} ({'passes' if suite['passes'] else 'FAILS'} its targets "
          f"{behaviour.TARGET_OVERALL:.0%} overall, {behaviour.TARGET_EACH:.0%} each)")
    return result


def contrast_check(data: RewardData) -> list[PreferencePair]:
    """Every contrast kind built (with a fixed seed) from up to CHECK_PER_KIND validation pairs:
    what each kind taught, on replies never trained on. A validation figure to choose a mix on;
    the behavioural suite, in other words, stays the test."""
    validation = [p for p in data.splits["validation"] if source_of(p) in SOURCE_WEIGHTS]
    share = min(1.0, CHECK_PER_KIND / max(1, len(validation)))
    return [replace(p, subset=f"{CONTRAST_CHECK}/{p.subset.removeprefix('contrast/')}")
            for p in contrast_pairs(validation, dict.fromkeys(CONTRAST_KINDS, share), seed=0)]


def validation_metrics(data: RewardData, calibrated: Calibrated) -> dict[str, dict[str, float]]:
    """Pooled validation before and after temperature scaling, and each source's and subset's
    part of it (`validation/hh-rlhf`, `validation/hh-rlhf/harmless-base`, ...): a mix that
    trades one kind of human preference for another shows there, not in the pooled figure."""
    return {"validation (T=1)": pairwise_metrics(calibrated.margins, 1.0),
            "validation": pairwise_metrics(calibrated.margins, calibrated.temperature),
            **{f"validation/{part}": pairwise_metrics(calibrated.margins[members],
                                                      calibrated.temperature)
               for part, members in validation_parts(data.splits["validation"]).items()}}


def calibrate(model: AnyModel, encoder: PairEncoder, pairs: list[PreferencePair],
              max_tokens: int) -> Calibrated:
    """Temperature and reward normalisation, both from the validation split."""
    chosen, rejected = score_pairs(model, encoder, pairs, max_tokens, desc="calibrate")
    rewards = np.concatenate([chosen, rejected])
    return Calibrated(
        margins=chosen - rejected, temperature=fit_temperature(chosen - rejected),
        normalisation=Normalisation(
            mean=float(rewards.mean()), std=float(rewards.std()) or 1.0,
            reference="pooled validation responses (chosen and rejected)", n=len(rewards)),
        rewards=rewards)


def seen_whole(encoder: PairEncoder) -> Whole:
    """Which pairs this encoder reads whole: neither response cut at its window (beside a
    prompt of at least min_prompt_tokens, as nearly all are)."""
    known: dict[str, bool] = {}  # each reply is tokenised once, whatever kinds it serves

    def whole(pairs: Sequence[PreferencePair]) -> list[bool]:
        new = list(dict.fromkeys(t for p in pairs for t in (p.chosen, p.rejected)
                                 if t not in known))
        known.update(zip(new, encoder.fits_whole(new), strict=True))
        return [known[p.chosen] and known[p.rejected] for p in pairs]
    return whole


def training_pairs(train: list[PreferencePair], config: TrainConfig,
                   whole: Whole | None = None) -> list[PreferencePair]:
    """The weighted pool, the label-free contrast pairs built from it, then at most
    `max_train_pairs` of all of them (sampled with the seed). For the kinds in `contrast_whole`,
    `whole` picks the contrast pairs the model reads whole. Without `pool`, only hh-rlhf and the
    user's own files are trained on (every source is still evaluated); sources or subsets in
    `exclude` are not trained on. With `replay` (re-training), every pair of the user's own
    files is kept and the rest is a sample `replay` times their number."""
    excluded = config.excluded()
    train = [p for p in train if p.subset not in excluded and source_of(p) not in excluded]
    if not config.pool:
        train = [p for p in train if source_of(p) not in POOLED]
    if config.replay is not None:
        own = [p for p in train if source_of(p) not in SOURCE_WEIGHTS]
        if not own:
            raise ValueError("replay needs --train-data: there is nothing new to learn")
        return own + sample(original_pairs(train, config, whole),
                            round(config.replay * len(own)), config.seed)
    return sample(original_pairs(train, config, whole), config.max_train_pairs, config.seed)


def original_pairs(train: list[PreferencePair], config: TrainConfig, whole: Whole | None = None
                   ) -> list[PreferencePair]:
    """The catalogued sources weighted, plus their label-free contrast pairs; with `replay`,
    the user's own files are left to the caller."""
    if config.replay is not None:
        train = [p for p in train if source_of(p) in SOURCE_WEIGHTS]
    real = weighted(train, config.seed)
    contrast = contrast_pairs(real, {kind: getattr(config, kind) for kind in CONTRAST_KINDS},
                              config.seed, whole, config.whole_kinds(),
                              config.brush_off_harmful)
    return real + contrast


def behaviour_summary(metrics: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The suite's accuracy overall and per functionality, against its targets."""
    prefix = f"{behaviour.SET_NAME}/"
    each = {k[len(prefix):]: v["accuracy"] for k, v in metrics.items() if k.startswith(prefix)}
    overall = metrics.get(behaviour.SET_NAME, {}).get("accuracy", float("nan"))
    return {"overall": overall, "functionalities": each,
            "passes": bool(overall >= behaviour.TARGET_OVERALL
                           and all(v >= behaviour.TARGET_EACH for v in each.values()))}


def write_plots(output: Path, history: list[dict[str, float]], calibrated: Calibrated,
                test: SetResult) -> list[Path]:
    t = calibrated.temperature
    return [
        report.plot_training(history, output / "training_curves.png"),
        report.plot_reliability({"validation, T=1": (calibrated.margins, 1.0),
                                 f"validation, T={t:.2f}": (calibrated.margins, t),
                                 f"hh-rlhf test, T={t:.2f}": (test.chosen - test.rejected, t)},
                                output / "reliability.png"),
        report.plot_reward_distributions(test.chosen, test.rejected, "hh-rlhf test",
                                         output / "reward_distributions.png"),
    ]
