"""alignserve against serving peers on the same MiniLM encoder, side by side in one run.

    .venv/bin/python -m bench.peers --model runs/reward/model             # alignserve, FastAPI
    make peers-env && .venv/bin/python -m bench.peers --model runs/reward/model \
        --infinity .venv-infinity                                         # ... and Infinity

One server at a time on 127.0.0.1, each given the same real hh-rlhf pairs, short enough that
nobody truncates (prompt <= 48 tokens, response <= 76: every pair fits 128 tokens, so every
server does the same work), in three scenarios:

- 1 pair per request from 16 concurrent clients (an RL trainer's reward calls);
- one prompt with 32 responses per request from 4 concurrent clients (best-of-32): the shape
  Infinity's /rerank takes (one query, many documents), so every server can be given it;
- single requests one after another on one keep-alive connection (latency).

Servers:
- alignserve: `python -m service` serving the store's reward model (`--tag`, default `reward`,
  built from the same directory as --model), its fp32 graph and, when the int8 gate kept one,
  its int8 graph (what it serves on a CPU by default);
- FastAPI + transformers (bench/peer_fastapi.py): PyTorch eager on --model itself;
- Infinity (pinned in requirements/peers-infinity.txt, in its own virtual environment, `make
  peers-env`), when --infinity names that environment: its /rerank endpoint on --model's
  encoder and head as a BertForSequenceClassification (CLS pooling, so its scores are not
  alignserve's), with its ONNX int8 engine (optimum) and its torch engine.

Each server's scores are checked against what its own engine should give, computed here: for
alignserve fp32 and the FastAPI peer, the same model in PyTorch (they must agree to 1e-3); for
alignserve int8, its int8 graph in onnxruntime, one pair at a time as the check sends them; for
Infinity, the classification model in PyTorch with token_type_ids (torch engine) and without
(its ONNX path drops them: the table shows by how much that moves its scores). Memory: resident
set of the server's processes after the run. With --rounds N every server is measured N times,
the servers taking turns in each round (so a slow spell of the machine hits them all), and the
table gives medians with their range. Writes a table to stdout and --out as JSON. Traffic goes
only to 127.0.0.1, bounded by --pairs per scenario and --rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.http_load import Request, concurrent, machine, one_at_a_time
from bench.memory import process_tree
from models import store
from models.artifact import INT8, TOKENIZER_FILE
from models.inputs import PairEncoder
from models.session import open_session, run
from service.local import launch, private_home, service_env, stop
from training.data import catalogue

REPO = Path(__file__).resolve().parents[1]
MAX_PROMPT, MAX_RESPONSE = 48, 76  # tokens: with [CLS] and two [SEP], at most 127
BEST_OF = 32
Pair = tuple[str, str]


@dataclass(frozen=True)
class Peer:
    """How to start a server and speak to it."""
    name: str
    command: Callable[[int], list[str]]
    ready_path: str
    path: str
    body: Callable[[str, list[str]], dict[str, Any]]  # (prompt, responses) -> request body
    scores: Callable[[dict[str, Any]], list[float]]
    env: dict[str, str]


@dataclass
class Row:
    server: str
    single_pairs_per_s: float
    best_of_pairs_per_s: float
    single_p50_ms: float
    memory_gb: float
    max_score_diff: float
    check: str


@dataclass
class Summary:
    """A server over --rounds runs: the median of each figure, with its range."""
    server: str
    single_pairs_per_s: float
    single_range: tuple[float, float]
    best_of_pairs_per_s: float
    best_of_range: tuple[float, float]
    single_p50_ms: float
    memory_gb: float  # the most seen
    max_score_diff: float  # the worst seen
    check: str
    runs: list[Row]

    @classmethod
    def of(cls, runs: list[Row]) -> Summary:
        def median(key: str) -> float:
            return float(np.median([getattr(r, key) for r in runs]))

        def span(key: str) -> tuple[float, float]:
            values = [getattr(r, key) for r in runs]
            return min(values), max(values)

        worst = max(runs, key=lambda r: r.max_score_diff)
        return cls(runs[0].server, median("single_pairs_per_s"), span("single_pairs_per_s"),
                   median("best_of_pairs_per_s"), span("best_of_pairs_per_s"),
                   median("single_p50_ms"), max(r.memory_gb for r in runs),
                   worst.max_score_diff, worst.check, runs)


def short_pairs(count: int, tokenizer: Any, seed: int = 0) -> list[Pair]:
    """Real hh-rlhf (last human turn, chosen reply) pairs that fit the window untruncated."""
    loaded = catalogue.load("hh-rlhf/helpful-base")
    candidates = []
    for pair in loaded.pairs:
        prompt = pair.prompt if isinstance(pair.prompt, str) else pair.prompt[-1].content
        prompt = prompt.rsplit("Human:", 1)[-1].split("Assistant:")[0].strip()
        if (len(tokenizer.encode(prompt, add_special_tokens=False)) <= MAX_PROMPT
                and len(tokenizer.encode(pair.chosen, add_special_tokens=False)) <= MAX_RESPONSE):
            candidates.append((prompt, pair.chosen.strip()))
    random.Random(seed).shuffle(candidates)
    if len(candidates) < count:
        raise SystemExit(f"only {len(candidates)} short pairs available, {count} asked")
    return candidates[:count]


def best_of_requests(pairs: list[Pair]) -> list[tuple[str, list[str]]]:
    """Each prompt with its own reply and the next 31 pairs' replies."""
    out = []
    for start in range(0, len(pairs) - BEST_OF + 1, BEST_OF):
        chunk = pairs[start:start + BEST_OF]
        out.append((chunk[0][0], [r for _, r in chunk]))
    return out


def requests_for(peer: Peer, prompts_responses: list[tuple[str, list[str]]]) -> list[Request]:
    return [(peer.body(prompt, responses), len(responses))
            for prompt, responses in prompts_responses]


@contextlib.contextmanager
def running(peer: Peer, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    process, url = launch(log, peer.env, timeout_s=300, command=peer.command,
                          ready_path=peer.ready_path)
    try:
        yield process, url
    finally:
        stop(process)


def measure(peer: Peer, pairs: list[Pair], expected: Callable[[list[Pair]], np.ndarray],
            tolerance: float, workdir: Path) -> Row:
    single = [(p, [r]) for p, r in pairs]
    with running(peer, workdir / f"{peer.name.split()[0].lower()}.log") as (process, url):
        check = pairs[:32]
        with httpx.Client(base_url=url, timeout=300) as client:
            got = [peer.scores(client.post(peer.path, json=peer.body(p, [r])).json())[0]
                   for p, r in check]
        diff = float(np.max(np.abs(np.array(got) - expected(check))))
        single_rate = asyncio.run(concurrent(url, peer.path, requests_for(peer, single), 16))
        best_of_rate = asyncio.run(concurrent(url, peer.path, requests_for(
            peer, best_of_requests(pairs)), 4))
        lone = one_at_a_time(url, peer.path, [b for b, _ in requests_for(peer, single[:200])])
        tree = process_tree(process.pid, include_root=True)
        memory = sum(rss for _, rss in tree.values()) / 2**20
    verdict = "ok" if diff <= tolerance else f"WRONG (over {tolerance:g})"
    row = Row(peer.name, single_rate.pairs_per_s, best_of_rate.pairs_per_s, lone.p50_ms, memory,
              diff, verdict)
    print(f"  {row.server}: {row.single_pairs_per_s:.1f} pairs/s single, "
          f"{row.best_of_pairs_per_s:.1f} best-of-{BEST_OF}, p50 {row.single_p50_ms:.1f} ms, "
          f"{row.memory_gb:.2f} GB, scores {verdict} (max diff {diff:.2g})", flush=True)
    return row


def alignserve_peer(tag: str, graph: str, workdir: Path) -> Peer:
    def body(prompt: str, responses: list[str]) -> dict[str, Any]:
        return {"items": [{"prompt": prompt, "response": r} for r in responses]}

    env = {**service_env(), **private_home(workdir), "ALIGNSERVE_REWARD_MODEL": tag,
           "ALIGNSERVE_MODERATION_MODEL": "", "ALIGNSERVE_INTENT_MODEL": "",
           "ALIGNSERVE_GRAPH": graph, "ALIGNSERVE_FEEDBACK_DB": str(workdir / "feedback.sqlite3")}
    return Peer(f"alignserve {graph} ({store.resolve(tag)})", lambda port: [
        sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)],
        "/readyz", "/v1/reward/score", body,
        lambda answer: [r["reward"] for r in answer["results"]], env)


def fastapi_peer(model: Path) -> Peer:
    def body(prompt: str, responses: list[str]) -> dict[str, Any]:
        return {"items": [{"prompt": prompt, "response": r} for r in responses]}

    return Peer("FastAPI + transformers (PyTorch eager)", lambda port: [
        sys.executable, "-m", "bench.peer_fastapi", "--model", str(model), "--port", str(port)],
        "/health", "/score", body, lambda answer: answer["rewards"], dict(os.environ))


def infinity_peer(venv: Path, model: Path, engine: str) -> Peer:
    def body(prompt: str, responses: list[str]) -> dict[str, Any]:
        return {"query": prompt, "documents": responses, "raw_scores": True}

    def scores(answer: dict[str, Any]) -> list[float]:
        return [r["relevance_score"] for r in sorted(answer["results"], key=lambda r: r["index"])]

    label = "ONNX int8" if engine == "optimum" else "torch"
    env = {**os.environ, "INFINITY_ANONYMOUS_USAGE_STATS": "0", "HF_HUB_OFFLINE": "1",
           "DO_NOT_TRACK": "1"}
    return Peer(f"Infinity 0.0.78 ({label})", lambda port: [
        str(venv / "bin" / "infinity_emb"), "v2", "--model-id", str(model), "--engine", engine,
        "--device", "cpu", "--port", str(port), "--host", "127.0.0.1", "--batch-size", "32",
        "--no-model-warmup"], "/health", "/rerank", body, scores, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True,
                        help="the trained model directory the store's --tag was exported from")
    parser.add_argument("--tag", default="reward", help="the store's reward model")
    parser.add_argument("--infinity", type=Path, help="Infinity's virtual environment")
    parser.add_argument("--pairs", type=int, default=512, help="pairs per scenario (bound)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every server this many times, taking turns; the table "
                        "gives each figure's median and range")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")

    from bench.peer_fastapi import RewardModel  # torch: only this process needs it

    reference = RewardModel(args.model, max_length=128)
    pairs = short_pairs(args.pairs, reference.tokenizer)
    workdir = Path(tempfile.mkdtemp(prefix="alignserve-peers-"))
    host = machine()
    print(f"{len(pairs)} real hh-rlhf pairs per scenario (none truncated); {host}")

    def ours(check: list[Pair]) -> np.ndarray:
        return np.array(reference.score([p for p, _ in check], [r for _, r in check]))

    stored = store.get(args.tag)
    encoder = PairEncoder.from_file(stored.path / TOKENIZER_FILE, stored.manifest.input)
    int8 = open_session(stored.path / INT8) if (stored.path / INT8).exists() else None

    def int8_graph(check: list[Pair]) -> np.ndarray:
        """The int8 graph on each pair alone, as the check sends them: dynamic quantisation
        scales activations per batch, so an int8 score depends on the batch it shares."""
        assert int8 is not None
        return np.array([run(int8, encoder.encode_batch([p], [r]), pad_id=encoder.pad_id)[0, 0]
                         for p, r in check])

    # (peer, its own engine's scores, tolerance): every round measures each in this order
    plan: list[tuple[Peer, Callable[[list[Pair]], np.ndarray], float]] = [
        (alignserve_peer(args.tag, "fp32", workdir), ours, 1e-3)]
    if int8 is not None:  # the graph alignserve serves on a CPU when the gate kept it
        plan.append((alignserve_peer(args.tag, "int8", workdir), int8_graph, 1e-3))
    plan.append((fastapi_peer(args.model), ours, 1e-3))
    if args.infinity:
        classifier, check = workdir / "infinity-model", workdir / "check.json"
        check.write_text(json.dumps(pairs[:32]))
        subprocess.run([str(args.infinity / "bin" / "python"), "-m", "bench.peer_infinity_model",
                        str(args.model), str(classifier), str(check)], cwd=REPO, check=True)
        expected = json.loads((classifier / "expected.json").read_text())
        index = {pair: i for i, pair in enumerate(map(tuple, expected["pairs"]))}

        def theirs(key: str) -> Callable[[list[Pair]], np.ndarray]:
            return lambda check: np.array([expected[key][index[p]] for p in check])

        for engine, key in (("optimum", "without_token_type_ids"), ("torch", "with")):
            plan.append((infinity_peer(args.infinity, classifier, engine), theirs(key),
                         0.05 if engine == "optimum" else 1e-3))
        drift = np.abs(np.array(expected["with"]) - np.array(expected["without_token_type_ids"]))
        print(f"  Infinity's ONNX path drops token_type_ids: its scores move by "
              f"{drift.mean():.3f} on average (max {drift.max():.3f}) from the model's own")

    runs: dict[str, list[Row]] = {}
    for round_ in range(args.rounds):
        if args.rounds > 1:
            print(f"round {round_ + 1} of {args.rounds}", flush=True)
        for peer, expect, tolerance in plan:
            runs.setdefault(peer.name, []).append(
                measure(peer, pairs, expect, tolerance, workdir))
    rows = [Summary.of(r) for r in runs.values()]

    spread = args.rounds > 1
    print(f"\n| server | 1-pair requests, 16 clients (pairs/s) | best-of-{BEST_OF}, 4 clients "
          f"(pairs/s) | single request p50 (ms) | memory (GB) | scores |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        single = f"{row.single_pairs_per_s:.1f}"
        best_of = f"{row.best_of_pairs_per_s:.1f}"
        if spread:
            single += f" ({row.single_range[0]:.1f}–{row.single_range[1]:.1f})"
            best_of += f" ({row.best_of_range[0]:.1f}–{row.best_of_range[1]:.1f})"
        print(f"| {row.server} | {single} | {best_of} | {row.single_p50_ms:.1f} | "
              f"{row.memory_gb:.2f} | {row.check} (max diff {row.max_score_diff:.2g}) |")
    if spread:
        print(f"medians of {args.rounds} rounds (range); the servers took turns in each round")
    if args.out:
        args.out.write_text(json.dumps({"machine": host, "pairs": len(pairs),
                                        "rounds": args.rounds,
                                        "rows": [asdict(r) for r in rows]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
