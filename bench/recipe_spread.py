"""How far apart the reward recipe's candidates are on hh-rlhf, and whether hh-rlhf validation
could have told them apart: every candidate run so far, from the result files; no model is run.

    .venv/bin/python -m bench.recipe_spread [--min-seeds 3] \
        [--out bench/results/recipe-spread-cpu-default.json] [RESULT_FILE ...]

RESULT_FILE defaults to every `bench/results/reward-default-cpu-v*.json` (what `python -m
bench.reward_recipe --preset default` wrote). A candidate is one name in one file: the default
moved between files, so the same flags in two files can be two recipes. A run found in several
files (a baseline carried from one to the next) counts once, where it is first found.

For the candidates with at least --min-seeds seeds: the mean hh-rlhf validation and test
accuracy of each; the spread of the test means against the spread that seed-to-seed noise alone
gives means of that many seeds (the within-candidate standard deviation, pooled, times the
root mean of 1 / seeds); and the correlation across candidates of the validation and the test
means. Runs of one seed share its sample of the training pairs across candidates, so the
candidates are not independent draws: the figures describe, they do not test.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
VALIDATION, TEST = "validation/hh-rlhf", "hh-rlhf"


@dataclass(frozen=True)
class Candidate:
    name: str
    file: str
    seeds: list[int]
    validation: list[float]  # hh-rlhf validation accuracy per seed, in points
    test: list[float]  # hh-rlhf test accuracy per seed, in points


def candidates(files: Sequence[Path]) -> list[Candidate]:
    """Every (file, name) with its runs, each run once over all files."""
    seen: set[tuple[Any, ...]] = set()
    found: dict[tuple[str, str], Candidate] = {}
    for path in files:
        try:
            runs = json.loads(path.read_text())
        except (OSError, ValueError) as exc:  # missing, unreadable or not JSON
            raise SystemExit(f"{path}: cannot read it as a result file ({exc})") from None
        if not isinstance(runs, list) or not all(
                isinstance(run, dict) and {"name", "seed"} <= run.keys() for run in runs):
            raise SystemExit(f"{path}: not a reward recipe result (a list of runs, each "
                             "with its name and seed)")
        for run in runs:
            metrics = run.get("eval", {})
            if VALIDATION not in metrics or TEST not in metrics:
                continue  # a run made before each source's validation part was reported
            validation, test = metrics[VALIDATION]["accuracy"], metrics[TEST]["accuracy"]
            key = (run["seed"], round(validation, 9), round(test, 9),
                   round(metrics.get("validation", {}).get("accuracy", 0.0), 9))
            if key in seen:
                continue
            seen.add(key)
            candidate = found.setdefault((path.name, run["name"]),
                                         Candidate(run["name"], path.name, [], [], []))
            candidate.seeds.append(run["seed"])
            candidate.validation.append(100 * validation)
            candidate.test.append(100 * test)
    return list(found.values())


def spread(chosen: Sequence[Candidate]) -> dict[str, float]:
    """The test means' spread against seed noise, and how validation means track test means."""
    if len(chosen) < 3:
        raise SystemExit(f"{len(chosen)} candidates with enough seeds: too few to compare")
    val = np.array([np.mean(c.validation) for c in chosen])
    test = np.array([np.mean(c.test) for c in chosen])
    seeds = np.array([len(c.test) for c in chosen])
    within = float(np.sqrt(np.mean([np.var(c.test, ddof=1) for c in chosen])))
    return {"candidates": len(chosen), "runs": int(seeds.sum()),
            "test_mean_min": float(test.min()), "test_mean_max": float(test.max()),
            "test_means_sd": float(test.std(ddof=1)),
            "seed_sd": within,
            "seed_noise_sd_of_the_means": within * float(np.sqrt(np.mean(1 / seeds))),
            "validation_means_sd": float(val.std(ddof=1)),
            "corr_validation_test": float(np.corrcoef(val, test)[0, 1]),
            "share_of_runs_at_least_55": float(np.mean(np.concatenate(
                [c.test for c in chosen]) >= 55))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, metavar="RESULT_FILE")
    parser.add_argument("--min-seeds", type=int, default=3,
                        help="candidates with fewer seeds are listed, not compared")
    parser.add_argument("--out", type=Path, help="write the table and the summary as JSON")
    args = parser.parse_args(argv)
    files = args.files or sorted(RESULTS.glob("reward-default-cpu-v*.json"),
                                 key=lambda p: int(p.stem.rsplit("-v", 1)[1]))
    if not files:
        raise SystemExit(f"no result files given and none in {RESULTS}")
    found = candidates(files)
    chosen = [c for c in found if len(c.seeds) >= args.min_seeds]
    print(f"{'candidate':70} {'file':28} seeds  hh val  hh test")
    for c in found:
        mark = "" if c in chosen else "  (too few seeds)"
        print(f"{c.name[:70]:70} {c.file:28} {len(c.seeds):5}  {np.mean(c.validation):6.1f}"
              f"  {np.mean(c.test):7.1f}{mark}")
    summary = spread(chosen)
    print(f"\n{summary['candidates']} candidates with {args.min_seeds}+ seeds, "
          f"{summary['runs']} runs: hh-rlhf test means {summary['test_mean_min']:.1f} to "
          f"{summary['test_mean_max']:.1f} (sd {summary['test_means_sd']:.2f}; seed noise "
          f"alone gives the means an sd of {summary['seed_noise_sd_of_the_means']:.2f}, one "
          f"run {summary['seed_sd']:.2f}); correlation of the validation and test means across "
          f"candidates {summary['corr_validation_test']:+.2f}; runs at 55% or more "
          f"{summary['share_of_runs_at_least_55']:.0%}")
    if args.out:
        args.out.write_text(json.dumps({"files": [p.name for p in files],
                                        "min_seeds": args.min_seeds, "summary": summary,
                                        "candidates": [asdict(c) for c in found]},
                                       indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
