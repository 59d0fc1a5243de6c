"""`alignserve models build-defaults` (what `make serve` runs first): the stages it plans, two
models at once on their share of the cores, the progress it shows, resuming, and stopping every
stage at the first failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from training import first_run
from training.first_run import (
    DEFAULTS,
    Default,
    Stage,
    build_defaults,
    finished_lines,
    launch,
    makespan,
    next_stage,
    plan,
    progress,
)

THREE = (Default("reward", "reward", 60, 20, what="reward model"),
         Default("moderation", "moderation", 50, 10, what="moderation model"),
         Default("intent", "intent", 30, 10, ("--dataset", "banking77"), what="intent model"))


@pytest.fixture
def stored(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    names: set[str] = set()
    monkeypatch.setattr(first_run, "_stored", lambda name: name in names)
    return names


@dataclass
class FakeJob:
    """A stage that writes its output at once and ends on its `polls`-th poll with `code`."""

    argv: list[str]
    code: int = 0
    polls: int = 1
    terminated: bool = False

    def poll(self) -> int | None:
        self.polls -= 1
        return self.code if self.polls <= 0 or self.terminated else None

    def terminate(self) -> None:
        self.terminated = True

    def wait(self) -> int:
        return self.code


@dataclass
class FakeLaunch:
    codes: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, model) -> exit
    polls: dict[tuple[str, str], int] = field(default_factory=dict)
    jobs: list[FakeJob] = field(default_factory=list)
    at_once: list[int] = field(default_factory=list)  # stages running as each one starts

    def __call__(self, argv: list[str], log: Path, threads: int) -> FakeJob:
        kind = argv[0]
        model = argv[1] if kind == "train" else argv[argv.index("--name") + 1]
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"{kind} {model}: 50%|#    | 1/2 [00:01<00:01]\r"
                       f"{kind} {model}: 100%|#####| 2/2 [00:02<00:00]\n{kind} {model} done\n")
        self.at_once.append(1 + sum(j.polls > 0 and not j.terminated for j in self.jobs))
        job = FakeJob(argv, self.codes.get((kind, model), 0), self.polls.get((kind, model), 1))
        self.jobs.append(job)
        return job


def build(runs: Path, fake: FakeLaunch, cores: int, data: Path | None = None
          ) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = build_defaults(runs, data, fake, lines.append, THREE, cores=cores, poll_s=0)
    return code, lines


def test_every_default_model_is_built_two_at_once_on_a_core_each(tmp_path: Path,
                                                                 stored: set[str]) -> None:
    assert [m.name for m in DEFAULTS] == ["reward", "moderation", "intent"]
    fake = FakeLaunch(polls={("train", "reward"): 4})  # the others take one poll each
    code, lines = build(tmp_path, fake, cores=2)
    assert code == 0
    started = [(j.argv[0], j.argv[1] if j.argv[0] == "train" else j.argv[-3]) for j in fake.jobs]
    # a free lane takes the longest stage ready (a model's export waits for its training)
    assert started == [("train", "reward"), ("train", "moderation"), ("train", "intent"),
                       ("export", "moderation"), ("export", "intent"), ("export", "reward")]
    assert max(fake.at_once) == 2  # never more stages at once than lanes
    threads = [j.argv[j.argv.index("--threads") + 1] for j in fake.jobs]
    assert threads[:5] == ["1"] * 5 and threads[5] == "2"  # the last one alone on both cores
    assert fake.jobs[2].argv[-4:-2] == ["--dataset", "banking77"]
    assert "building 6 stages, 2 at once" in lines[0]
    stages = [line for line in lines if line.startswith("\n[stage")]
    assert len(stages) == 6
    assert "[stage 1 of 6] train the reward model (on 1 of 2 cores" in stages[0]
    assert f"its output: {tmp_path / 'reward' / 'train.log'}" in stages[0]
    # each stage's output once, its bars in their final state, when it ends
    assert lines.count("train reward: 100%|#####| 2/2 [00:02<00:00]") == 1
    assert not any("50%" in line for line in lines)
    assert "[stage 1 of 6 done in" in lines[lines.index("train reward done") + 1]
    assert "all 6 stages done" in lines[-1]


def test_no_data_directory_is_said_before_any_stage_starts(tmp_path: Path,
                                                          stored: set[str]) -> None:
    fake = FakeLaunch()
    code, lines = build(tmp_path / "runs", fake, cores=2, data=tmp_path / "no-such-data")
    assert code == 2 and not fake.jobs
    assert lines == [f"no data directory at {tmp_path / 'no-such-data'}: the default models "
                     "are trained from the data sets in ../shared/data beside this repository "
                     "(or wherever ALIGNSERVE_DATA_DIR or --data-dir points); nothing was built"]


def test_one_core_builds_one_stage_at_a_time(tmp_path: Path, stored: set[str]) -> None:
    fake = FakeLaunch()
    data = tmp_path / "data"
    data.mkdir()
    code, lines = build(tmp_path / "runs", fake, cores=1, data=data)
    assert code == 0 and max(fake.at_once) == 1
    assert [j.argv[0] for j in fake.jobs] == ["train"] * 3 + ["export"] * 3
    assert all(j.argv[-2:] == ["--data-dir", str(data)] for j in fake.jobs)
    assert "one at a time on 1 CPU core(s)" in lines[0]
    # the estimate: every stage in turn, 60 + 20 + 50 + 10 + 30 + 10 s
    assert "about 3 min 00 s in all" in lines[0]


def test_stored_models_are_skipped_and_finished_runs_only_exported(tmp_path: Path,
                                                                   stored: set[str]) -> None:
    stored.update({"reward", "moderation"})
    (tmp_path / "intent" / "model").mkdir(parents=True)
    (tmp_path / "intent" / "model" / "manifest.json").write_text("{}")
    assert [(s.model.name, s.kind) for s in plan(tmp_path, THREE)] == [("intent", "export")]
    stored.add("intent")
    fake = FakeLaunch()
    code, lines = build(tmp_path, fake, cores=2)
    assert code == 0 and not fake.jobs
    assert all("in the store" in line for line in lines)


def test_an_interrupted_run_resumes_and_a_failure_stops_every_stage(tmp_path: Path,
                                                                    stored: set[str]) -> None:
    (tmp_path / "reward" / "checkpoints").mkdir(parents=True)
    (tmp_path / "reward" / "checkpoints" / "trainer_state.pt").write_bytes(b"")
    fake = FakeLaunch(codes={("train", "moderation"): 3}, polls={("train", "reward"): 5})
    code, lines = build(tmp_path, fake, cores=2)
    assert code == 3
    assert "--resume" in fake.jobs[0].argv
    assert fake.jobs[0].terminated  # the reward model's training was stopped (it checkpoints)
    assert len(fake.jobs) == 2  # nothing else was started
    assert "train moderation done" in lines  # the failed stage's output is shown
    assert "stage 2 of 6 failed (exit 3)" in lines[-1]
    assert str(tmp_path / "moderation" / "train.log") in lines[-1]


def test_the_schedule_and_its_estimate() -> None:
    reward, moderation, intent = (Stage(m, k) for m, k in
                                  ((THREE[0], "train"), (THREE[1], "train"), (THREE[2], "train")))
    exports = [Stage(m, "export") for m in THREE]
    # the longest ready stage; none of a model whose training still runs or waits
    assert next_stage([reward, exports[0], intent], busy=set()) is reward
    assert next_stage([exports[0], intent], busy={"reward"}) is intent
    assert next_stage([exports[0]], busy={"reward"}) is None
    assert makespan([], [reward, exports[0]], lanes=1) == 80.0
    # two at once go 1.5 times slower each: 50 s of both trainings, then the rest
    both = makespan([], [reward, exports[0], moderation], lanes=2, shared=1.5)
    assert both == pytest.approx(50 * 1.5 + 10 + 20)
    # running stages count with the work they have left
    assert makespan([(reward, 10.0)], [exports[0]], lanes=2) == pytest.approx(30.0)
    assert makespan([(reward, -5.0)], [exports[0]], lanes=2) == pytest.approx(20.0)  # overdue


def test_progress_and_finished_output_read_like_a_terminal(tmp_path: Path) -> None:
    text = ("training on 8 pairs\ntrain:  10%|#  | 30/300 [00:30<04:30]\r"
            "train:  40%|#### | 120/300 [02:00<03:00, 1.0step/s, loss=0.69]\r")
    assert progress(text) == "train 120/300"
    log = tmp_path / "train.log"
    log.write_bytes(("x" * 10_000 + "\n" + text).encode())
    assert first_run._read(log, first_run.BAR_TAIL).endswith(text)  # the tail alone, \r kept
    assert progress(first_run._read(log, first_run.BAR_TAIL)) == "train 120/300"
    assert progress("loading\n") == ""
    cleared = "score: 50%|##| 5/10\r          \rdone\n"
    assert finished_lines(text + "\n" + cleared) == [
        "training on 8 pairs", "train:  40%|#### | 120/300 [02:00<03:00, 1.0step/s, loss=0.69]",
        "done"]


def test_a_stage_runs_in_a_process_of_its_own_with_its_output_in_its_log(
        tmp_path: Path) -> None:
    ok = launch(["models", "--help"], tmp_path / "m" / "train.log", threads=1)
    failed = launch(["models", "show", "absent"], tmp_path / "m" / "export.log", threads=1)
    assert ok.wait() == 0 and ok.poll() == 0
    assert "build-defaults" in (tmp_path / "m" / "train.log").read_text()
    assert failed.wait() != 0 and (tmp_path / "m" / "export.log").read_text()
