"""`alignserve score` on real hh-rlhf conversations: the same scores as the service, shards,
bad records reported and kept out, resuming, Parquet, the classifiers, and local Ray Data
with two workers giving identical files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from models.taxonomy import CATEGORIES
from service import shards
from training.cli import main
from training.data import catalogue


def hh_records(n: int) -> list[dict[str, Any]]:
    """Real conversations: hh-rlhf helpful-base test pairs as (messages, response) records."""
    pairs = catalogue.load("hh-rlhf/helpful-base").pairs[:n]
    out = []
    for i, pair in enumerate(pairs):
        messages = ([{"role": "user", "content": pair.prompt}] if isinstance(pair.prompt, str)
                    else [{"role": m.role, "content": m.content} for m in pair.prompt])
        out.append({"id": i, "messages": messages, "response": pair.chosen})
    return out


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return hh_records(30)


@pytest.fixture(scope="module")
def input_file(records: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = [json.dumps(r) for r in records]
    lines[3] = "{not json"  # each kind of bad record, kept out and reported
    lines[7] = json.dumps({"id": 7, "prompt": "hi"})
    lines[11] = json.dumps({"id": 11, "prompt": "hi", "response": "  "})
    lines.append(json.dumps({"id": 30, "prompt": "which is better?", "response_a": "this one",
                             "response_b": "no idea"}))
    return write_jsonl(tmp_path_factory.mktemp("offline") / "hh.jsonl", lines)


def score(model: str, input_file: Path, output: Path, *extra: str) -> dict[str, Any]:
    assert main(["score", "--model", model, "--input", str(input_file), "--output",
                 str(output), "--shard-size", "8", "--graph", "fp32", *extra]) == 0
    summary: dict[str, Any] = json.loads((output / "summary.json").read_text())
    return summary


def test_scores_match_the_service_and_bad_records_are_reported(
        stored_tiny: str, server: str, input_file: Path, tmp_path: Path) -> None:
    summary = score(stored_tiny, input_file, tmp_path / "out")
    assert summary["shards"] == 4 and summary["shards_this_run"] == 4
    assert summary["scored_this_run"] == 28 and summary["rejected_total"] == 3
    plan = shards.plan(input_file, tmp_path / "out", 8)
    rows = list(shards.merged(plan))
    assert [r["id"] for r in rows] == [i for i in range(31) if i not in (3, 7, 11)]
    rejected = [json.loads(line) for i in range(4)
                for line in plan.rejected(i).read_text().splitlines()]
    assert [r["line"] for r in rejected] == [4, 8, 12]  # 1-based lines of the input
    assert rejected[0]["error"].startswith("not JSON")
    assert "response" in rejected[1]["error"] and "response" in rejected[2]["error"]

    singles = [r for r in rows if "reward" in r][:10]
    served = httpx.post(f"{server}/v1/reward/score", json={"items": [
        {"messages": r["messages"], "response": r["response"]} for r in singles]}).json()
    assert [r["reward"] for r in singles] == pytest.approx(
        [s["reward"] for s in served["results"]], abs=1e-4)
    pair = rows[-1]
    assert {"reward_a", "reward_b", "p_a_over_b"} <= set(pair) and 0 < pair["p_a_over_b"] < 1


def test_an_interrupted_job_resumes_without_rescoring(stored_tiny: str, input_file: Path,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "out"
    score(stored_tiny, input_file, out)
    plan = shards.plan(input_file, out, 8)
    before = plan.part(2).read_text()
    plan.part(2).unlink()  # as if the job had stopped while writing shard 2
    (out / "part-00003.jsonl").touch()  # a finished shard is never opened again
    summary = score(stored_tiny, input_file, out)
    assert summary["shards_this_run"] == 1 and summary["shards_skipped"] == 3
    assert plan.part(2).read_text() == before


def test_parquet_in_parquet_out(stored_tiny: str, records: list[dict[str, Any]],
                                tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = [{"id": r["id"], "prompt": r["messages"][-1]["content"], "response": r["response"]}
            for r in records]
    pq.write_table(pa.Table.from_pylist(flat), tmp_path / "hh.parquet")
    write_jsonl(tmp_path / "hh.jsonl", [json.dumps(r) for r in flat])
    score(stored_tiny, tmp_path / "hh.parquet", tmp_path / "pq")
    score(stored_tiny, tmp_path / "hh.jsonl", tmp_path / "js")
    from_parquet = list(shards.merged(shards.plan(tmp_path / "hh.parquet", tmp_path / "pq", 8)))
    from_jsonl = list(shards.merged(shards.plan(tmp_path / "hh.jsonl", tmp_path / "js", 8)))
    assert [r["reward"] for r in from_parquet] == pytest.approx(
        [r["reward"] for r in from_jsonl], abs=1e-6)


def test_the_classifiers_score_texts(stored_classifiers: dict[str, str],
                                     tmp_path: Path) -> None:
    texts = write_jsonl(tmp_path / "texts.jsonl", [
        json.dumps({"text": t}) for t in ["thanks, that fixed it", "where is my card",
                                          "you are a terrible awful person " * 40]])
    score(stored_classifiers["moderation"], texts, tmp_path / "moderation")
    rows = list(shards.merged(shards.plan(texts, tmp_path / "moderation", 8)))
    assert set(rows[0]["categories"]) == set(CATEGORIES) and rows[2]["windows"] > 1
    score(stored_classifiers["intent"], texts, tmp_path / "intent")
    rows = list(shards.merged(shards.plan(texts, tmp_path / "intent", 8)))
    assert all(isinstance(r["label"], str) and 0 < r["probability"] <= 1 for r in rows)


def test_ray_data_with_two_workers_writes_the_same_files(stored_tiny: str, input_file: Path,
                                                         tmp_path: Path) -> None:
    import signal

    import ray

    local = score(stored_tiny, input_file, tmp_path / "local")
    before = signal.getsignal(signal.SIGTERM)
    on_ray = score(stored_tiny, input_file, tmp_path / "ray", "--ray", "--workers", "2")
    assert not ray.is_initialized() and signal.getsignal(signal.SIGTERM) == before  # as it was
    assert on_ray["mode"] == "ray (2 workers)" and on_ray["shards_this_run"] == 4
    assert on_ray["rejected_total"] == local["rejected_total"] == 3
    for shard in range(4):
        ours = [json.loads(x) for x in (tmp_path / "local" / f"part-{shard:05d}.jsonl")
                .read_text().splitlines()]
        theirs = [json.loads(x) for x in (tmp_path / "ray" / f"part-{shard:05d}.jsonl")
                  .read_text().splitlines()]
        assert [r["id"] for r in ours] == [r["id"] for r in theirs]
        assert [r.get("reward", r.get("reward_a")) for r in ours] == pytest.approx(
            [r.get("reward", r.get("reward_a")) for r in theirs], abs=1e-5)
