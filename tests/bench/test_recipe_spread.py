"""bench.recipe_spread: candidates read from result files, a run carried from one file to the
next counted once, and the spread of the candidates' means against seed noise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.recipe_spread import candidates, main


def run(name: str, seed: int, validation: float, test: float) -> dict[str, object]:
    return {"name": name, "seed": seed, "eval": {
        "validation": {"accuracy": 0.55}, "validation/hh-rlhf": {"accuracy": validation},
        "hh-rlhf": {"accuracy": test}}}


def write(path: Path, runs: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps(runs))
    return path


def test_candidates_and_their_spread(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                     ) -> None:
    base = [run("default", s, 0.53 + s / 100, 0.54 + s / 100) for s in range(3)]
    first = write(tmp_path / "reward-default-cpu-v1.json", [
        *base, *(run("a", s, 0.52, 0.55 + s / 200) for s in range(3)),
        run("one seed only", 0, 0.6, 0.6),
        {"name": "old", "seed": 0, "eval": {"hh-rlhf": {"accuracy": 0.5}}}])  # no parts: skipped
    second = write(tmp_path / "reward-default-cpu-v2.json", [
        *base, *(run("b", s, 0.56, 0.52 + s / 100) for s in range(3))])  # base carried along

    found = candidates([first, second])
    assert [(c.file, c.name, len(c.seeds)) for c in found] == [
        (first.name, "default", 3), (first.name, "a", 3), (first.name, "one seed only", 1),
        (second.name, "b", 3)]
    assert found[0].test == pytest.approx([54.0, 55.0, 56.0])

    out = tmp_path / "spread.json"
    main([str(first), str(second), "--out", str(out)])
    summary = json.loads(out.read_text())["summary"]
    assert summary["candidates"] == 3 and summary["runs"] == 9
    assert summary["test_mean_min"] == pytest.approx(53.0)
    assert summary["test_mean_max"] == pytest.approx(55.5)
    assert summary["share_of_runs_at_least_55"] == pytest.approx(5 / 9)
    assert "(too few seeds)" in capsys.readouterr().out


def test_too_few_candidates_or_a_file_of_another_kind(tmp_path: Path) -> None:
    one = write(tmp_path / "one.json", [run("default", s, 0.5, 0.5 + s / 100) for s in range(3)])
    with pytest.raises(SystemExit, match="1 candidates with enough seeds: too few"):
        main([str(one)])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"summary": {}}))
    with pytest.raises(SystemExit, match="not a reward recipe result"):
        main([str(other)])
    other.write_text(json.dumps([{"eval": {}}]))  # runs without their name and seed
    with pytest.raises(SystemExit, match="not a reward recipe result"):
        main([str(other)])
    other.write_text("{not json")
    with pytest.raises(SystemExit, match="cannot read it as a result file"):
        main([str(other)])
    with pytest.raises(SystemExit, match="cannot read it as a result file"):
        main([str(tmp_path / "missing.json")])
