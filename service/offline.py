"""`alignserve score`: a file of records scored offline by the serving engine (the same front,
graph and calibration as the service, no HTTP), written beside the records.

Records, by the model's task (one JSON object per line, or Parquet columns of the same names):
    reward        {"prompt" | "messages", "response"}  -> reward, normalised_reward, tokens
                  {"prompt" | "messages", "response_a", "response_b"}  -> reward_a, reward_b,
                  p_a_over_b (calibrated)
    moderation    {"text"}  -> flagged, categories {category: probability}, windows
    intent        {"text"}  -> label, probability, out_of_scope
Every other field of a record is kept as it is.

The input is cut into shards of `shard_size` records (service/shards.py). Each shard is scored
(length-sorted under a token budget, as in the service) and written to OUT/part-NNNNN.jsonl (or
.parquet) in one atomic rename, with the records it could not score in
OUT/rejected-NNNNN.jsonl (line or row, and why): reported, counted and kept out, never
silently dropped. A job run again skips every
shard whose part is written, so an interrupted job resumes where it stopped. Locally, shards
run one after another on all cores; with `--ray`, on Ray Data actors (one per worker, the
cores split between them) that read their shards from the input themselves, so the same
command scales to a Ray cluster (with the input and OUT on storage every node sees).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from models import store
from models.inputs import Text
from models.manifest import Task
from service.fronts import IntentFront, ModerationFront, RewardFront
from service.runtime import Engine
from service.schemas import ComparePair, ScoreItem
from service.settings import Graph, Settings
from service.shards import Plan, count_lines, read_shard, write_jsonl, write_part


class TextRecord(BaseModel):
    text: Text


@dataclass(frozen=True)
class ShardResult:
    shard: int
    scored: int
    rejected: int
    seconds: float
    skipped: bool = False  # already written by an earlier run


class Scorer:
    """One stored model's front and engine: scores a list of records of its task."""

    def __init__(self, tag: str, graph: str = "auto", threads: int | None = None,
                 batch_tokens: int | None = None) -> None:
        """`batch_tokens`: padded tokens per engine call; None: the service's own for the
        provider and threads (service/runtime.py's BATCH_TOKENS), small on a CPU, large on
        CUDA."""
        stored = store.get(tag)  # every file's sha256 checked
        self.manifest = stored.manifest
        self.tag = f"{self.manifest.name}:{self.manifest.version}"
        # One caller: one lane, on every core it was given.
        settings = Settings(graph=Graph(graph), lanes=1, threads=threads,
                            max_batch_tokens=batch_tokens)
        from service.fronts import front_for

        self.front = front_for(stored.path, self.manifest)
        self.engine = Engine(stored.path, settings, self.front.encoder.pad_id)

    def score(self, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                             list[tuple[int, str]]]:
        """(scored records, [(index in `records`, why)] for those that could not be)."""
        task = self.manifest.task
        parsed: list[tuple[int, Any]] = []
        rejected: list[tuple[int, str]] = []
        for i, record in enumerate(records):
            try:
                parsed.append((i, self._parse(record)))
            except (ValidationError, ValueError, TypeError) as exc:
                rejected.append((i, _reason(exc)))
        if not parsed:
            return [], rejected
        values = [p for _, p in parsed]
        if task is Task.reward:
            extra = self._rewards(values)
        elif task is Task.multilabel:
            extra = self._moderate(values)
        else:
            extra = self._classify(values)
        scored = [{**records[i], **fields} for (i, _), fields in zip(parsed, extra, strict=True)]
        return scored, rejected

    def _parse(self, record: dict[str, Any]) -> Any:
        if not isinstance(record, dict):
            raise ValueError("a record must be a JSON object")
        if self.manifest.task is not Task.reward:
            return TextRecord.model_validate(record, strict=False).text
        known = {k: v for k, v in record.items() if k in {"prompt", "messages", "response",
                                                          "response_a", "response_b"}}
        if "response_a" in known or "response_b" in known:
            return ComparePair.model_validate(known)
        return ScoreItem.model_validate(known)

    def _rewards(self, values: list[ScoreItem | ComparePair]) -> list[dict[str, Any]]:
        assert isinstance(self.front, RewardFront)
        prompts, responses = [], []
        for value in values:
            answers = ([value.response] if isinstance(value, ScoreItem)
                       else [value.response_a, value.response_b])
            prompts += [value.as_prompt()] * len(answers)
            responses += answers
        items = self.front.prepare(prompts, responses)
        scores = iter(self.front.post(items, self.engine.core(items)))
        out = []
        for value in values:
            if isinstance(value, ScoreItem):
                s = next(scores)
                row = {"reward": s.reward, "normalised_reward": s.normalised,
                       "tokens": s.tokens}
                if s.spread is not None:  # an ensemble: its members' spread
                    row |= {"reward_std": s.spread.std,
                            "conservative_reward": s.spread.conservative}
                out.append(row)
            else:
                a, b = next(scores), next(scores)
                out.append({"reward_a": a.reward, "reward_b": b.reward,
                            "p_a_over_b": self.front.preference(a.reward, b.reward)})
        return out

    def _moderate(self, texts: list[str]) -> list[dict[str, Any]]:
        assert isinstance(self.front, ModerationFront)
        windows = self.front.prepare_windows(texts)
        results = self.front.moderate(windows, self.engine.core(windows.items))
        return [{"flagged": r.flagged, "windows": r.windows,
                 "categories": {c: v.probability for c, v in r.categories.items()}}
                for r in results]

    def _classify(self, texts: list[str]) -> list[dict[str, Any]]:
        assert isinstance(self.front, IntentFront)
        items = self.front.prepare_texts(texts)
        results = self.front.classify(items, self.engine.core(items), 1)
        return [{"label": "out_of_scope" if r.out_of_scope else r.top[0].label,
                 "probability": r.top[0].probability, "out_of_scope": r.out_of_scope}
                for r in results]


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}"
                         for e in exc.errors(include_input=False)[:5])
    return str(exc)


def score_shard(scorer: Scorer, plan: Plan, shard: int) -> ShardResult:
    """Score one shard and write its part (atomically) and its rejected records."""
    started = time.perf_counter()
    records, where = read_shard(plan, shard)
    usable = [(w, r) for w, r in zip(where, records, strict=True) if not isinstance(r, str)]
    bad = [(w, r) for w, r in zip(where, records, strict=True) if isinstance(r, str)]
    scored, rejected = scorer.score([r for _, r in usable])
    unit = "row" if plan.suffix == ".parquet" else "line"
    reasons = bad + [(usable[i][0], why) for i, why in rejected]
    write_jsonl(plan.rejected(shard), [{unit: w, "error": why} for w, why in sorted(reasons)])
    write_part(plan.part(shard), scored)  # last: its presence marks the shard done
    return ShardResult(shard, len(scored), len(reasons), time.perf_counter() - started)


# --- running --------------------------------------------------------------------------------


def run_local(tag: str, plan: Plan, graph: str = "auto", threads: int | None = None,
              progress: Callable[[ShardResult], None] | None = None,
              batch_tokens: int | None = None) -> list[ShardResult]:
    scorer = Scorer(tag, graph, threads, batch_tokens)
    results = []
    for shard in plan.pending():
        result = score_shard(scorer, plan, shard)
        results.append(result)
        if progress:
            progress(result)
    return results


def run_ray(tag: str, plan: Plan, workers: int, graph: str = "auto", address: str | None = None,
            progress: Callable[[ShardResult], None] | None = None) -> list[ShardResult]:
    """The pending shards through Ray Data: `workers` actors, each holding one Scorer with its
    share of the cores, each reading, scoring and writing its shards."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("--ray needs Ray: pip install 'alignserve[batch]'") from exc
    pending = plan.pending()
    if not pending:
        return []
    started_here = not ray.is_initialized()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
             include_dashboard=False, configure_logging=False)
    try:
        return _ray_shards(ray, tag, plan, pending, workers, graph, address, progress)
    finally:
        if started_here:  # leave the caller's process as it was: no Ray, its own handlers
            ray.shutdown()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)


def _ray_shards(ray: Any, tag: str, plan: Plan, pending: list[int], workers: int, graph: str,
                address: str | None, progress: Callable[[ShardResult], None] | None
                ) -> list[ShardResult]:
    threads = max(1, (os.cpu_count() or 1) // workers) if address is None else None

    class ShardScorer:
        def __init__(self) -> None:
            self.scorer = Scorer(tag, graph, threads)

        def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
            done = [score_shard(self.scorer, plan, int(s)) for s in batch["shard"]]
            return {"shard": [r.shard for r in done], "scored": [r.scored for r in done],
                    "rejected": [r.rejected for r in done], "seconds": [r.seconds for r in done]}

    dataset = ray.data.from_items([{"shard": s} for s in pending]).map_batches(
        ShardScorer, batch_size=1, concurrency=workers, num_cpus=threads or 1)
    results = []
    for row in dataset.iter_rows():
        result = ShardResult(int(row["shard"]), int(row["scored"]), int(row["rejected"]),
                             float(row["seconds"]))
        results.append(result)
        if progress:
            progress(result)
    return sorted(results, key=lambda r: r.shard)


def summary(plan: Plan, tag: str, results: list[ShardResult], seconds: float,
            mode: str) -> dict[str, Any]:
    """Totals over every shard written so far (earlier runs included), and this run's pace."""
    written = [i for i in range(plan.shards) if plan.part(i).exists()]
    rejected = sum(count_lines(plan.rejected(i)) for i in written)
    scored_now = sum(r.scored for r in results)
    return {"model": tag, "input": str(plan.input), "output": str(plan.output), "mode": mode,
            "shards": plan.shards, "shards_done": len(written),
            "shards_this_run": len(results), "shards_skipped": len(written) - len(results),
            "scored_this_run": scored_now, "rejected_total": rejected,
            "seconds": round(seconds, 2),
            "records_per_second": round((scored_now + sum(r.rejected for r in results))
                                        / seconds, 1) if seconds > 0 and results else None}
