"""The rule that picks the reward recipe's default among candidates (bench/recipe_rule.py), and
the ladder's steps and baselines (bench/reward_recipe.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.recipe_rule import CONTRAST, FINAL, adds_cue, choose, confirm
from bench.reward_recipe import LADDER, VARIANTS, baseline, flags, missing_seeds, run_dir


def run(name: str, seed: int, pooled: float, hh: float, settings: dict[str, str] | None = None,
        **kinds: float) -> dict[str, Any]:
    figures = {"validation": pooled, "validation/hh-rlhf": hh,
               **{f"{CONTRAST}/{kind}": accuracy for kind, accuracy in kinds.items()}}
    return {"name": name, "seed": seed, "settings": settings or {},
            "eval": {key: {"accuracy": value / 100, "n": 100} for key, value in figures.items()}}


def test_the_best_contrast_average_wins_when_nothing_else_is_lost() -> None:
    runs = [run(FINAL, 0, 56, 54, truncation=62, restatement=66),
            run("final, more restatement", 0, 55.5, 53.5, truncation=60, restatement=79)]
    assert choose(runs)["name"] == "final, more restatement"


def test_a_lead_inside_the_noise_keeps_the_final_recipe() -> None:
    """MIN_GAIN: one standard error of the difference of two three-seed means."""
    runs = [run(FINAL, 0, 56, 54, truncation=62, restatement=66),
            run("final, dropout off", 0, 56, 54, truncation=63, restatement=67)]
    assert choose(runs)["name"] == FINAL
    runs[1] = run("final, dropout off", 0, 56, 54, truncation=65, restatement=67)
    assert choose(runs)["name"] == "final, dropout off"


def test_every_ladder_step_is_a_flag_the_trainer_knows() -> None:
    from training.cli import build_parser

    parser = build_parser()
    for name, settings in LADDER:
        args = parser.parse_args(["train", "reward", "--output", "x", *flags(settings)])
        assert args.task == "reward", name
    assert len({tuple(sorted(s.items())) for _, s in LADDER}) == len(LADDER)  # no step twice


def test_a_new_cue_is_taken_when_it_costs_nothing_validation_can_see() -> None:
    """A kind the default does not train cannot lead on the default's kinds; its own kind is
    left out of the comparison (the default's runs were not measured on it)."""
    brush = {"brush-off": "0.1"}
    assert adds_cue(brush, "default") and not adds_cue({"substitution": "0.2"}, "default")
    runs = [run(FINAL, 0, 56, 54, truncation=62, restatement=66),
            run("final, brush-off", 0, 55.5, 53, brush, truncation=61, restatement=65,
                brush_off=95)]
    assert choose(runs)["name"] == "final, brush-off"
    runs[1] = run("final, brush-off", 0, 55.5, 53, brush, truncation=55, restatement=66,
                  brush_off=95)  # truncation 7 points lower: out
    assert choose(runs)["name"] == FINAL
    runs[1] = run("final, brush-off", 0, 53, 53, brush, truncation=62, restatement=66,
                  brush_off=95)  # pooled validation 3 points lower: out
    assert choose(runs)["name"] == FINAL


def test_a_candidate_that_loses_one_kind_is_out_however_much_it_gains_on_another() -> None:
    runs = [run(FINAL, 0, 56, 54, truncation=62, restatement=66),
            run("final, whole restatements", 0, 56, 54, truncation=54, restatement=90)]
    assert choose(runs)["name"] == FINAL


def test_a_candidate_that_loses_real_preferences_is_out() -> None:
    runs = [run(FINAL, 0, 56, 54, truncation=62, restatement=66),
            run("final, contrast only", 0, 53.5, 54, truncation=70, restatement=90)]
    assert choose(runs)["name"] == FINAL


def test_means_over_seeds_decide_and_the_lowest_seed_is_returned() -> None:
    runs = [run(FINAL, 0, 56, 54, truncation=62), run(FINAL, 1, 56, 54, truncation=62),
            run("final, b", 1, 56, 54, truncation=80), run("final, b", 0, 56, 54, truncation=50)]
    best = choose(runs)
    assert (best["name"], best["seed"]) == ("final, b", 0)


def test_a_baseline_read_from_an_earlier_file_stands_for_the_final_recipe(tmp_path: Path
                                                                          ) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps([run("final, restatement 0.2", seed, 56, 54, truncation=62)
                                   for seed in (0, 1)] + [run("other", 0, 60, 60)]))
    read = baseline(results, "final, restatement 0.2")
    assert [(r["name"], r["seed"]) for r in read] == [(FINAL, 0), (FINAL, 1)]
    runs = [*read, run("final, b", 0, 56, 54, truncation=50)]
    assert choose(runs)["name"] == FINAL
    with pytest.raises(ValueError, match="no run named 'missing'"):
        baseline(results, "missing")


def test_a_winner_whose_int8_graph_the_gate_rejects_does_not_replace_the_final_recipe(
        tmp_path: Path) -> None:
    """What `make serve` builds is served as its int8 graph on a CPU: the export's gate on the
    winner's seed-0 model has the last word, and its decision is kept in the run."""
    runs = [run(FINAL, 1, 56, 54, truncation=62), run(FINAL, 0, 56, 54, truncation=62),
            run("final, 3,600 pairs", 0, 57, 53, truncation=66)]
    best = choose(runs)
    asked: list[Path] = []

    def gate(accepted: str) -> Any:
        def decide(model: Path) -> dict[str, Any]:
            asked.append(model)
            return {"accepted": accepted, "metric": "pairwise_accuracy", "fp32": 0.578,
                    "int8": 0.560, "drop_low_points": 0.65, "drop_high_points": 3.13}
        return decide

    model = run_dir(tmp_path, "final, 3,600 pairs", 0) / "model"
    assert confirm(best, runs, model, gate("yes")) is best
    assert asked == [model]
    kept = confirm(best, runs, model, gate("no"))
    assert kept["name"] == FINAL and kept["seed"] == 0
    assert best["int8"]["accepted"] == "no"  # recorded in the winner's run, for results.json
    asked.clear()
    assert confirm(kept, runs, model, gate("no")) is kept and not asked  # nothing to replace


def with_subset(runs: list[dict[str, Any]], subset: str, accuracies: list[float]
                ) -> list[dict[str, Any]]:
    for r, accuracy in zip(runs, accuracies, strict=True):
        r["eval"][f"validation/hh-rlhf/{subset}"] = {"accuracy": accuracy / 100}
    return runs


def test_a_candidate_that_trades_one_hh_rlhf_subset_for_the_rest_is_out() -> None:
    """The long brush-offs' case: harmless-base 2.4 points lower on validation, about two
    standard errors of the difference of the two means, while every other guard passes."""
    brush = {"long-brush-off": "0.1"}
    final = [run(FINAL, seed, 55.7, 54.1, truncation=58) for seed in range(3)]
    candidate = [run("final, long brush-off", seed, 56.2, 53.2, brush, truncation=58,
                     long_brush_off=99) for seed in range(3)]
    runs = [*with_subset(final, "harmless-base", [52.5, 50.8, 54.2]),
            *with_subset(candidate, "harmless-base", [49.2, 50.1, 51.0])]
    assert choose(runs)["name"] == FINAL
    with_subset(candidate, "harmless-base", [51.5, 52.4, 53.3])  # within the spread: taken
    assert choose(runs)["name"] == "final, long brush-off"


def test_a_baseline_without_the_subset_figures_the_candidates_have_is_an_error() -> None:
    runs = [run(FINAL, 0, 56, 54, truncation=62), run(FINAL, 1, 56, 54, truncation=62),
            *with_subset([run("final, b", 0, 56, 54, truncation=66),
                          run("final, b", 1, 56, 54, truncation=66)], "harmless-base", [50, 52])]
    with pytest.raises(ValueError, match=r"reward-default-cpu-v18\.json"):
        choose(runs)
    with_subset(runs[:2], "harmless-base", [52, 53])
    assert choose(runs)["name"] == "final, b"


def test_the_seeds_left_to_train_of_the_chosen_recipe_skip_those_it_has() -> None:
    recorded = [run(FINAL, seed, 56, 54) for seed in range(6)]  # a baseline's six seeds
    candidate = [run("final, more restatement", seed, 55, 53) for seed in range(2)]
    assert missing_seeds(recorded + candidate, FINAL, range(3)) == []
    assert missing_seeds(recorded + candidate, "final, more restatement", range(3)) == [2]


def test_each_preset_names_a_candidate_once() -> None:
    """Two candidates of one name would share their run directories: the second would read
    the first's runs as its own."""
    for preset, variants in VARIANTS.items():
        names = [name for name, _ in variants]
        assert len(names) == len(set(names)), preset
