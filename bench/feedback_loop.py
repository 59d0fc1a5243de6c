"""The feedback loop on real data, end to end, as anyone can rerun it:

    .venv/bin/python -m bench.feedback_loop --task reward       # ~35 min on 2 CPU cores
    .venv/bin/python -m bench.feedback_loop --task moderation   # ~15 min

reward: a reward model is trained (default preset) without hh-rlhf's harmless-base subset and
served; that subset's training pairs reach it as preference feedback through POST /v1/feedback;
`alignserve retrain` continues it on them (plus replayed original data) and the gate decides;
a promoted version is swapped into the running service. Then the same champion is re-trained
on the same pairs with chosen and rejected swapped, which the gate must refuse.
moderation: the same with a classifier that never saw TweetEval hate, taught by its training
texts as moderation feedback (hate labels only; offensive unknown).

Everything runs on this machine; the service listens on 127.0.0.1 only and the traffic is the
bounded feedback batches. Results: bench/results/feedback-loop-<task>-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from feedback.records import RECORD
from feedback.store import SqliteStore
from models import store
from service.client import Client
from service.local import serving
from training import gate
from training.cli import main as cli
from training.retrain import Retrained, retrain

RESULTS = Path(__file__).parent / "results"
BATCH = 200


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    import os

    return f"{model}, {os.cpu_count()} cores, no GPU used"


def harmless_base_feedback(limit: int, seed: int) -> list[dict[str, Any]]:
    """hh-rlhf harmless-base training pairs as preference feedback records."""
    from training.data.reward_data import load_reward_data
    from training.data.split import sample

    pairs = [p for p in load_reward_data(other_sources=False).splits["train"]
             if p.subset == "hh-rlhf/harmless-base"]
    records = []
    for i, pair in enumerate(sample(pairs, limit, seed)):
        prompt: dict[str, Any] = ({"prompt": pair.prompt} if isinstance(pair.prompt, str) else
                                  {"messages": [{"role": m.role, "content": m.content}
                                                for m in pair.prompt]})
        records.append({"kind": "preference", "id": f"harmless-{i}", "source": "bench:hh-rlhf",
                        **prompt, "chosen": pair.chosen, "rejected": pair.rejected})
    return records


def tweeteval_hate_feedback(limit: int, seed: int) -> list[dict[str, Any]]:
    from training.data import labelled_sets
    from training.data.split import sample

    _, splits = labelled_sets.load_labelled("tweeteval-hate")
    return [{"kind": "moderation", "id": f"hate-{i}", "source": "bench:tweeteval",
             "text": e.text, "labels": {"hate": bool(e.labels["hate"])}}
            for i, e in enumerate(sample(splits["train"].examples, limit, seed))]


def flipped(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        if r["kind"] == "preference":
            out.append({**r, "chosen": r["rejected"], "rejected": r["chosen"]})
        else:
            out.append({**r, "labels": {k: not v for k, v in r["labels"].items()}})
    return out


def post(url: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Send the feedback in batches; what the service stored and its live agreement."""
    started, stored = time.perf_counter(), 0
    with Client(url, timeout_s=120) as client:
        for i in range(0, len(records), BATCH):
            stored += len(client.feedback(records[i:i + BATCH]).stored)
    seconds = time.perf_counter() - started
    agreement: dict[str, float] = {}
    deadline = time.monotonic() + 300  # scored after the answers, a few pairs at a time
    while records[0]["kind"] == "preference" and time.monotonic() < deadline:
        for line in httpx.get(f"{url}/metrics").text.splitlines():
            if line.startswith("alignserve_preference_feedback_agreement_total{"):
                agreed = 'agreed="true"' in line
                agreement["true" if agreed else "false"] = float(line.rsplit(" ", 1)[1])
        if sum(agreement.values()) >= stored:
            break
        time.sleep(2)
    total = sum(agreement.values())
    return {"sent": len(records), "stored": stored, "seconds": round(seconds, 1),
            "live_agreement": agreement.get("true", 0) / total if total else None}


def run_retrain(task: str, champion: str, out: Path, db: Path, overrides: dict[str, Any],
                promote: bool) -> Retrained:
    feedback = SqliteStore(db)
    try:
        return retrain(task, champion, out, feedback, overrides=overrides, promote=promote)
    finally:
        feedback.close()


def loop(task: str, out: Path, champion_args: list[str], feedback: list[dict[str, Any]],
         overrides: dict[str, Any], settings: dict[str, str], capture_only: bool = False
         ) -> dict[str, Any]:
    """Champion -> served -> feedback over HTTP -> retrain and gate -> swap; then the flipped
    feedback, which must be refused."""
    name = f"loop-{task}"
    clock = Clock()
    run = out / "champion"
    if not (run / "model" / "manifest.json").exists():
        print(f"== training the champion: {' '.join(champion_args)}", flush=True)
        assert cli(["train", task, "--output", str(run), "--name", name, *champion_args]) == 0
    clock.lap("champion_train_s")
    version = json.loads((run / "model" / "manifest.json").read_text())["version"]
    try:
        champion = store.resolve(f"{name}:{version}")  # exported by an earlier run
    except store.ArtifactError:
        assert cli(["export", "--checkpoint", str(run / "model"), "--name", name]) == 0
        champion = store.resolve(f"{name}:{version}")
    clock.lap("champion_export_s")
    results: dict[str, Any] = {"task": task, "machine": machine(), "champion": champion,
                               "champion_settings": champion_args,
                               "retrain_settings": overrides, "gate_rule": gate.rule(
                                   gate.TOLERANCE_POINTS)}

    db = out / "feedback.sqlite3"
    for stale in out.glob("feedback.sqlite3*"):
        stale.unlink()
    role = "reward" if task == "reward" else "moderation"
    served = {**settings, f"ALIGNSERVE_{role.upper()}_MODEL": champion,
              "ALIGNSERVE_FEEDBACK_DB": str(db)}
    with serving(out / "serve.log", 180, **served) as url:
        print(f"== {len(feedback)} feedback records -> POST {url}/v1/feedback", flush=True)
        results["feedback"] = post(url, feedback)
        clock.lap("feedback_post_s")
        if capture_only:
            results["timings"] = clock.laps
            return results
        print("== alignserve retrain", flush=True)
        taught = run_retrain(task, champion, out / "retrain", db, overrides, promote=True)
        clock.lap("retrain_s")
        results["retrain"] = summary(taught)
        if taught.tag:
            swapped = httpx.post(f"{url}/v1/admin/models/{role}", json={"tag": taught.tag},
                                 timeout=600).json()
            served = httpx.get(f"{url}/v1/models").json()["models"]
            results["swap"] = {**swapped, "served_after": [f"{m['name']}:{m['version']}"
                                                           for m in served]}
            clock.lap("swap_s")

    print("== the same feedback flipped: the gate must refuse it", flush=True)
    flipped_db = out / "flipped.sqlite3"
    for stale in out.glob("flipped.sqlite3*"):
        stale.unlink()
    writer = SqliteStore(flipped_db)
    writer.add([RECORD.validate_python(r) for r in flipped(feedback)])
    writer.close()
    refused = run_retrain(task, champion, out / "flipped", flipped_db, overrides, promote=False)
    clock.lap("flipped_retrain_s")
    results["flipped"] = summary(refused)
    results["timings"] = clock.laps
    return results


class Clock:
    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.last, 1)
        self.last = now


def summary(result: Retrained) -> dict[str, Any]:
    return {"promoted": result.decision.promoted, "tag": result.tag,
            "reasons": result.decision.reasons, "metric": result.decision.metric,
            "feedback_examples_needed": gate.examples_needed(result.decision.sets[0]),
            "sets": {s.name: {"n": s.n, "champion": round(s.champion, 4),
                              "challenger": round(s.challenger, 4),
                              "gain_points": round(s.gain, 1),
                              "interval": [round(s.gain_low, 1), round(s.gain_high, 1)]}
                     for s in result.decision.sets}}


TASKS: dict[str, tuple[list[str], Callable[[int, int], list[dict[str, Any]]], dict[str, str]]] = {
    "reward": (["--preset", "default", "--exclude", "hh-rlhf/harmless-base"],
               harmless_base_feedback,
               {"ALIGNSERVE_MODERATION_MODEL": "", "ALIGNSERVE_INTENT_MODEL": ""}),
    "moderation": (["--preset", "default", "--exclude", "tweeteval-hate"],
                   tweeteval_hate_feedback, {"ALIGNSERVE_REWARD_MODEL": ""}),
}


SMOKE = {"reward": ["--max-train-pairs", "48", "--max-length", "64"],
         "moderation": ["--max-train-texts", "256", "--max-length", "32"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--feedback", type=int, default=None,
                        help="Feedback records to send (default: 1000 pairs for reward, 2000 "
                             "texts for moderation).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/feedback-loop"))
    parser.add_argument("--capture-only", action="store_true",
                        help="Serve the champion, send the feedback and report its live "
                             "agreement; no re-training. Results: ...-capture-cpu.json.")
    parser.add_argument("--results", type=Path, default=None,
                        help="Where to write the results (default: bench/results/"
                             "feedback-loop-<task>[-capture]-cpu.json, which a rerun replaces: "
                             "name another file to keep an earlier one).")
    parser.add_argument("--smoke", action="store_true",
                        help="A few minutes on tiny settings, to check the plumbing; writes "
                             "no results.")
    args = parser.parse_args()
    champion_args, make_feedback, settings = TASKS[args.task]
    count = args.feedback or (1000 if args.task == "reward" else 2000)
    out = args.out / args.task
    if args.smoke:
        champion_args = [*champion_args, *SMOKE[args.task]]
        count, out = 100, args.out / f"{args.task}-smoke"
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-capture" if args.capture_only else ""
    path = args.results or RESULTS / f"feedback-loop-{args.task}{suffix}-cpu.json"
    if not args.smoke:  # a results path that cannot be written fails now, not after the run
        path.parent.mkdir(parents=True, exist_ok=True)
    results = loop(args.task, out, [*champion_args, "--seed", str(args.seed)],
                   make_feedback(count, args.seed), {"seed": args.seed}, settings,
                   args.capture_only)
    results["seed"] = args.seed
    if args.smoke:
        print(json.dumps(results, indent=2))
        return
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("champion", "feedback", "timings")}, indent=2))
    print(f"results in {path}")


if __name__ == "__main__":
    main()
