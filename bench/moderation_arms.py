"""What the moderation candidates' benches share (identity_balance.py, obfuscation.py,
hate_sources.py): a preset (the default unless a bench asks for another) trained with a
candidate's flags per seed, a report's figures, the test-side rows every one of them prints, and
the arms printed side by side."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

# (label, report key, field): read after a rule's choice, never by it
TAIL_ROWS = [
    ("ConvAbuse harassment AUPRC", "convabuse/harassment", "auprc"),
    ("ConvAbuse sexual harassment AUPRC", "convabuse/sexual_harassment", "auprc"),
    ("Davidson clean side flagged", "davidson/clean", "flag_rate"),
    ("TweetEval hate clean side flagged", "tweeteval-hate/clean", "flag_rate"),
    ("EDOS clean side flagged", "edos/clean", "flag_rate"),
    ("clean requests flagged", "clean-requests/clean", "flag_rate"),
]


def train(runs: Path, arm: str, seed: int, flags: list[str],
          preset: str = "default") -> dict[str, Any]:
    """RUNS/ARM-SEED's report, trained with `preset` and `flags` when it is not there yet."""
    out = runs / f"{arm}-{seed}"
    report = out / "report.json"
    if not report.exists():
        print(f"== training {arm}, seed {seed} -> {out}", flush=True)
        subprocess.run([sys.executable, "-m", "training.cli", "train", "moderation", "--preset",
                        preset, "--seed", str(seed), "--output", str(out), *flags],
                       check=True)
    loaded: dict[str, Any] = json.loads(report.read_text())
    return loaded


def figure(report: dict[str, Any], key: str, field: str) -> float:
    """A report's figure; NaN when the report has no such entry (an older run's)."""
    return float(report["eval"][key][field]) if key in report["eval"] else float("nan")


def arm_rows(reports: dict[str, list[dict[str, Any]]], rows: list[tuple[str, str, str]]
             ) -> dict[str, dict[str, list[float]]]:
    """Each (label, report key, field) row's figures: per arm, one per seed."""
    return {label: {arm: [figure(r, key, field) for r in runs] for arm, runs in reports.items()}
            for label, key, field in rows}


def model_dirs(reports: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Each arm's trained model directories, one per seed, for the results file."""
    return {arm: [r["model_dir"] for r in runs] for arm, runs in reports.items()}


def print_table(table: dict[str, dict[str, list[float]]], headers: tuple[str, str],
                seeds: list[int], label_width: int, cell_width: int) -> None:
    """Each row's two arms: the mean over the seeds, each seed's figure in brackets."""
    print(f"\n{'':{label_width}}{headers[0]:>{cell_width}}{headers[1]:>{cell_width}}"
          f"   (seeds {seeds})")
    for label, row in table.items():
        cells = [f"{statistics.mean(v):.3f} ({', '.join(f'{x:.3f}' for x in v)})"
                 for v in row.values()]
        print(f"{label[:label_width]:{label_width}}{cells[0]:>{cell_width}}"
              f"{cells[1]:>{cell_width}}")
