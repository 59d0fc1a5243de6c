"""`alignserve models build-defaults` (what `make serve` runs first): the stages it plans, the
progress it shows, resuming, and stopping at the first failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from training import first_run
from training.first_run import DEFAULTS, Default, build_defaults, plan

TWO = (Default("reward", "reward", 60, 20, what="reward model"),
       Default("intent", "intent", 30, 10, ("--dataset", "banking77"), what="intent model"))


@pytest.fixture
def stored(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    names: set[str] = set()
    monkeypatch.setattr(first_run, "_stored", lambda name: name in names)
    return names


def test_every_default_model_is_built_when_the_store_is_empty(tmp_path: Path,
                                                               stored: set[str]) -> None:
    assert [m.name for m in DEFAULTS] == ["reward", "moderation", "intent"]
    calls: list[list[str]] = []
    lines: list[str] = []
    assert build_defaults(tmp_path, None, lambda argv: calls.append(argv) or 0, lines.append,
                          TWO) == 0
    assert [c[:2] for c in calls] == [["train", "reward"], ["export", "--checkpoint"],
                                      ["train", "intent"], ["export", "--checkpoint"]]
    assert calls[2][-2:] == ["--dataset", "banking77"]
    assert calls[3][-2:] == ["--name", "intent"]
    stages = [line for line in lines if "[stage" in line]
    assert len(stages) == 4 and "[stage 1 of 4] train the reward model" in stages[0]
    assert "about 2 min 00 s left in all" in stages[0]  # 60 + 20 + 30 + 10 s estimated
    assert "all 4 stages done" in lines[-1]


def test_stored_models_are_skipped_and_finished_runs_only_exported(tmp_path: Path,
                                                                   stored: set[str]) -> None:
    stored.add("reward")
    (tmp_path / "intent" / "model").mkdir(parents=True)
    (tmp_path / "intent" / "model" / "manifest.json").write_text("{}")
    assert [(s.model.name, s.kind) for s in plan(tmp_path, TWO)] == [("intent", "export")]
    stored.add("intent")
    lines: list[str] = []
    assert build_defaults(tmp_path, None, lambda argv: 1, lines.append, TWO) == 0
    assert all("in the store" in line for line in lines)


def test_an_interrupted_run_resumes_and_a_failure_stops_the_build(tmp_path: Path,
                                                                  stored: set[str]) -> None:
    (tmp_path / "reward" / "checkpoints").mkdir(parents=True)
    (tmp_path / "reward" / "checkpoints" / "trainer_state.pt").write_bytes(b"")
    calls: list[list[str]] = []
    lines: list[str] = []

    def cli(argv: list[str]) -> int:
        calls.append(argv)
        return 3 if argv[0] == "export" else 0

    assert build_defaults(tmp_path, Path("/data"), cli, lines.append, TWO) == 3
    assert "--resume" in calls[0] and calls[0][-2:] == ["--data-dir", "/data"]
    assert len(calls) == 2  # the intent model was not started
    assert "stage 2 of 4 failed (exit 3)" in lines[-1]
