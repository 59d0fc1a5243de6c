"""`alignserve retrain` on the tiny model: feedback in a real SQLite store, the real data for
replay and the original test sets. Feedback that teaches something is promoted into the store
with its lineage; feedback that is noise is refused and nothing enters the store."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from feedback.records import RECORD
from feedback.store import SqliteStore
from tests.conftest import synthetic_pairs
from training.cli import main
from training.retrain import group_of, held_out


@pytest.fixture(scope="module")
def champion(tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    from models import store
    from models.manifest import Manifest

    copy = tmp_path_factory.mktemp("champion") / "artifact"
    shutil.copytree(tiny_artifact, copy)
    Manifest.load(copy).model_copy(update={"name": "tiny-retrain"}).save(copy)
    return store.save(copy)


def feedback_db(path: Path, pairs: list[dict[str, str]]) -> Path:
    store = SqliteStore(path)
    store.add([RECORD.validate_python({"kind": "preference", "id": f"r{i}", "source": "agent:1",
                                       **pair}) for i, pair in enumerate(pairs)])
    store.close()
    return path


def test_feedback_that_teaches_is_promoted_with_its_lineage(champion: str, tmp_path: Path
                                                            ) -> None:
    from models import store

    db = feedback_db(tmp_path / "feedback.sqlite3", synthetic_pairs(300, seed=11))
    out = tmp_path / "retrain"
    # A wide tolerance: the tiny model is near chance on the real sets, so only the feedback
    # decides here; bench/feedback_loop.py shows the tolerance at work on a real model.
    code = main(["retrain", "reward", "--from", champion, "--output", str(out),
                 "--feedback-db", str(db), "--tolerance", "100", "--epochs", "2",
                 "--lr", "1e-3"])
    assert code == 0
    decision = json.loads((out / "gate.json").read_text())
    assert decision["promoted"] and decision["sets"][0]["name"] == "feedback (held out)"
    assert decision["sets"][0]["gain_low"] > 0
    assert (out / "gate.png").stat().st_size > 0
    latest = store.get("tiny-retrain")
    assert latest.tag != champion
    lineage = latest.manifest.lineage
    assert lineage is not None and lineage.parent == champion
    assert lineage.feedback.records == 300
    assert lineage.feedback.trained_on + lineage.feedback.held_out == 300
    assert lineage.gate["promoted"] is True
    assert (latest.path / "weights" / "head.safetensors").is_file()  # it can be re-trained


def test_noise_is_refused_and_nothing_is_stored(champion: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from models import store

    rng = random.Random(3)
    pairs = [{k: v for k, v in p.items()} for p in synthetic_pairs(200, seed=12)]
    for pair in pairs:  # the marker on a random side: nothing to learn
        if rng.random() < 0.5:
            pair["chosen"], pair["rejected"] = pair["rejected"], pair["chosen"]
    db = feedback_db(tmp_path / "noise.sqlite3", pairs)
    before = {tag for tag, _ in store.list_stored()}
    code = main(["retrain", "reward", "--from", champion, "--output", str(tmp_path / "noise"),
                 "--feedback-db", str(db), "--tolerance", "100"])
    assert code == 5
    decision = json.loads((tmp_path / "noise" / "gate.json").read_text())
    assert not decision["promoted"] and "held-out feedback" in decision["reasons"][0]
    # a chance gain above 0 is told how much feedback would confirm it; a loss is not
    needed = decision["feedback_examples_needed"]
    assert ("more feedback: about" in capsys.readouterr().out) == (needed is not None)
    assert {tag for tag, _ in store.list_stored()} == before


def test_too_little_feedback_is_refused_before_training(champion: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    db = feedback_db(tmp_path / "few.sqlite3", synthetic_pairs(5))
    assert main(["retrain", "reward", "--from", champion, "--output", str(tmp_path / "few"),
                 "--feedback-db", str(db)]) == 2
    assert "needs at least 20" in capsys.readouterr().err


def test_the_held_out_split_keeps_conversations_whole() -> None:
    lines = [{"prompt": "Hello  there", "chosen": "a", "rejected": "b"},
             {"messages": [{"role": "user", "content": "hello there"},
                           {"role": "assistant", "content": "hi"}], "chosen": "c",
              "rejected": "d"}]
    assert group_of(lines[0]) == group_of(lines[1]) == "hello there"
    share = sum(held_out(f"text {i}") for i in range(10_000)) / 10_000
    assert 0.18 < share < 0.22


def test_feedback_stats_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = feedback_db(tmp_path / "feedback.sqlite3", synthetic_pairs(30))
    assert main(["feedback", "stats", "--feedback-db", str(db)]) == 0
    printed = capsys.readouterr().out
    assert "30 records" in printed and "preference 30" in printed and "agent:1 30" in printed
    out = tmp_path / "pairs.jsonl"
    assert main(["feedback", "export", "--kind", "preference", "--since", "2000-01-01",
                 "--out", str(out), "--feedback-db", str(db)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 30 and {"prompt", "chosen", "rejected", "id"} <= set(lines[0])
    assert main(["feedback", "export", "--kind", "preference", "--until", "2000-01-01",
                 "--out", str(out), "--feedback-db", str(db)]) == 0
    assert out.read_text() == ""
    assert main(["feedback", "purge", "--older-than-days", "1", "--feedback-db", str(db)]) == 0
    assert "erased 0 records" in capsys.readouterr().out
    assert main(["feedback", "stats", "--feedback-db", str(tmp_path / "none.sqlite3")]) == 2


@pytest.mark.parametrize("task", ["moderation", "intent"])
def test_classifiers_retrain_and_are_judged(task: str, moderation_run: Path, intent_run: Path,
                                            tmp_path: Path) -> None:
    """The classifiers' path end to end on the tiny models: feedback of their kind, a
    challenger continued from the stored weights, the gate's record (nothing stored)."""
    from models.manifest import Manifest
    from tests.integration.conftest import export_and_store

    run = moderation_run if task == "moderation" else intent_run
    tag = export_and_store(run, f"tiny-retrain-{task}")
    labels = Manifest.load(run / "model").labels
    rng = random.Random(4)
    records = []
    for i in range(120):
        text = f"feedback text number {i} about my card and refund"
        if task == "moderation":
            records.append({"kind": "moderation", "id": f"m{i}", "text": text,
                            "labels": {"offensive": rng.random() < 0.5}})
        else:
            records.append({"kind": "intent", "id": f"i{i}", "text": text,
                            "intent": rng.choice(labels)})
    store = SqliteStore(tmp_path / "feedback.sqlite3")
    store.add([RECORD.validate_python(r) for r in records])
    store.close()
    out = tmp_path / "out"
    code = main(["retrain", task, "--from", tag, "--output", str(out), "--no-promote",
                 "--feedback-db", str(tmp_path / "feedback.sqlite3")])
    assert code in (0, 5)
    decision = json.loads((out / "gate.json").read_text())
    assert decision["sets"][0]["name"] == "feedback (held out)"
    assert decision["feedback"]["records"] == 120
    assert Manifest.load(out / "challenger" / "model").labels == labels
