"""Service benchmark: the HTTP service against the bare onnxruntime session, side by side.

    .venv/bin/python -m bench.serve --model reward

Starts `bentoml serve` on 127.0.0.1 (what `make serve` runs), then on the same real hh-rlhf
(prompt, response) pairs and the same model file measures, in one run:

- the bare engine: pre-tokenised items through the session (sorted, token-budgeted batches,
  exactly the engine's code path), 32 at a time and one at a time, taken by as many threads
  as the service has lanes (service/runtime.py); a lone item on one lane, and on one call over
  every core (ALIGNSERVE_LANES=1: the lowest lone latency);
- the service: 32-pair /v1/reward/score requests from 4 concurrent clients; single-pair
  requests from 16 concurrent clients (both with aiohttp, bodies encoded beforehand); single
  requests one after another on one keep-alive connection (latency, with the leanest client:
  http.client).

Targets (issue #15): 32-pair requests at least 0.9 of the bare engine, a lone request's p50
within 3 ms of it; single-pair requests from 16 clients have no target of their own here (the
issue sets theirs against Infinity: bench/peers.py), 0.6 marks a regression.

    .venv/bin/python -m bench.serve --graph int8 --rounds 3 \
        --compare ALIGNSERVE_LONE_CALL_THREADS=0 ""

measures each setting (service settings, comma-separated; "" for the defaults) in turn, bare
engine and service both under it, --rounds times, the settings taking turns in each round.

Traffic goes only to 127.0.0.1 and is bounded by --pairs per scenario. The load generator
shares the machine with the service, as a sidecar would. Ratios carry over between machines;
the absolute numbers belong to this one.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.http_load import Request, Result, concurrent, machine, one_at_a_time
from models import store
from models.inputs import EncodedPair
from models.session import run
from service.local import serving
from service.runtime import RewardRuntime
from service.settings import PREFIX, Settings
from training.data import catalogue

Pair = tuple[str, str]
PATH = "/v1/reward/score"


def real_pairs(count: int, seed: int = 0) -> list[Pair]:
    """(rendered prompt, chosen response) from the hh-rlhf helpful test set, shuffled."""
    loaded = catalogue.load("hh-rlhf/helpful-base")
    pairs = [(p.prompt, p.chosen) for p in loaded.pairs]
    random.Random(seed).shuffle(pairs)
    if len(pairs) < count:
        raise SystemExit(f"only {len(pairs)} pairs available")
    out: list[Pair] = []
    for prompt, response in pairs[:count]:
        text = prompt if isinstance(prompt, str) else "\n".join(m.content for m in prompt)
        out.append((text, response))
    return out


def bare(runtime: RewardRuntime, items: list[EncodedPair], batch: int, lanes: int = 0
         ) -> Result:
    """The engine as the service runs it: batches of `batch` items taken by its lanes (or
    `lanes` callers), each call timed."""
    engine = runtime.engine
    engine.core(items[:batch])  # warm
    batches = [items[start:start + batch] for start in range(0, len(items), batch)]

    def timed(chunk: list[EncodedPair]) -> float:
        t0 = time.perf_counter()
        engine.core(chunk)
        return time.perf_counter() - t0

    started = time.perf_counter()
    with ThreadPoolExecutor(lanes or engine.lanes.count) as pool:
        latencies = list(pool.map(timed, batches))
    elapsed = time.perf_counter() - started
    return Result(len(items) / elapsed, statistics.median(latencies) * 1000)


def score_requests(pairs: list[Pair], per_request: int) -> list[Request]:
    return [({"items": [{"prompt": p, "response": r} for p, r in pairs[i:i + per_request]]},
             len(pairs[i:i + per_request])) for i in range(0, len(pairs), per_request)]


def parse_setting(spec: str) -> dict[str, str]:
    """'ALIGNSERVE_A=1,ALIGNSERVE_B=x' -> its variables ('' -> none: the defaults)."""
    pairs = [part.strip().split("=", 1) for part in spec.split(",") if part.strip()]
    if any(len(p) != 2 or not p[0].startswith(PREFIX) for p in pairs):
        raise SystemExit(f"--compare {spec!r}: expected {PREFIX}NAME=VALUE[,...]")
    return {name.strip(): value.strip() for name, value in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="reward", help="store tag of the reward model")
    parser.add_argument("--pairs", type=int, default=640, help="pairs per scenario (bound)")
    parser.add_argument("--graph", default="auto", choices=["auto", "fp32", "int8"])
    parser.add_argument("--compare", nargs="+", default=[""], metavar="SETTINGS",
                        help="service settings measured in turn, each NAME=VALUE[,...] "
                             "(ALIGNSERVE_ variables; '' for the defaults)")
    parser.add_argument("--rounds", type=int, default=1, help="times each setting is measured")
    args = parser.parse_args()
    settings = [parse_setting(spec) for spec in args.compare]
    tag = store.resolve(args.model)
    pairs = real_pairs(args.pairs)
    print(f"{len(pairs)} real hh-rlhf pairs per scenario; {machine()}")
    for round_ in range(1, args.rounds + 1):
        for spec, env in zip(args.compare, settings, strict=True):
            print(f"\nround {round_}, settings: {spec or 'the defaults'}")
            measure(tag, pairs, args.graph, env)


def measure(tag: str, pairs: list[Pair], graph: str, env: dict[str, str]) -> None:
    """The bare engine and the service under the settings `env`, side by side."""
    fields = {name.removeprefix(PREFIX).lower(): value for name, value in env.items()}
    settings = Settings.model_validate({**fields, "reward_model": tag, "graph": graph})
    runtime = RewardRuntime.from_store(tag, settings)
    items = runtime.front.prepare([p for p, _ in pairs], [r for _, r in pairs])
    tokens = statistics.mean(len(i) for i in items)
    print(f"{tag} ({runtime.engine.graph.value}, {runtime.engine.provider}, "
          f"{runtime.engine.lanes}); mean {tokens:.0f} tokens")
    calls, lanes, pad_id = runtime.engine.calls, runtime.engine.lanes, runtime.engine.pad_id
    if calls.lone is not None:  # a lone call must score as a lane does
        checked = items[:200]
        differ = np.abs(run(calls.lone, checked, lanes.batch_tokens, pad_id)
                        - run(calls.lane, checked, lanes.batch_tokens, pad_id)).max()
        print(f"a lone call's scores against a lane's, {len(checked)} pairs: max difference "
              f"{differ:.1e}")

    log = Path(tempfile.mkdtemp(prefix="alignserve-bench-")) / "serve.log"
    # The reward model alone: the same model and file as the bare engine, nothing else loaded.
    served = {**env, "ALIGNSERVE_REWARD_MODEL": tag, "ALIGNSERVE_MODERATION_MODEL": "",
              "ALIGNSERVE_INTENT_MODEL": "", "ALIGNSERVE_GRAPH": graph}
    with serving(log, 180, **served) as url:
        rows = [
            ("32-pair requests, 4 clients", bare(runtime, items, 32),
             asyncio.run(concurrent(url, PATH, score_requests(pairs, 32), 4)), 0.90),
            ("1-pair requests, 16 clients", bare(runtime, items, 1),
             asyncio.run(concurrent(url, PATH, score_requests(pairs, 1), 16)), 0.60),
        ]
        sequential_bare = bare(runtime, items[:200], 1, lanes=1)
        sequential = one_at_a_time(url, PATH, [b for b, _ in score_requests(pairs[:200], 1)])
    # A lone call on every core, as one lane would run it (ALIGNSERVE_LANES=1).
    wide = RewardRuntime.from_store(tag, settings.model_copy(update={"lanes": 1}))
    wide_bare = bare(wide, items[:200], 1, lanes=1)

    print(f"\n{'scenario':32}{'bare pairs/s':>14}{'service pairs/s':>17}{'ratio':>8}"
          f"{'target':>8}")
    for name, engine, service, target in rows:
        ratio = service.pairs_per_s / engine.pairs_per_s
        print(f"{name:32}{engine.pairs_per_s:14.1f}{service.pairs_per_s:17.1f}{ratio:8.2f}"
              f"{'>=' + format(target, '.2f'):>8}{'' if ratio >= target else '  MISSED'}")
    gap = sequential.p50_ms - sequential_bare.p50_ms
    print(f"\nsingle request, one at a time: p50 bare {sequential_bare.p50_ms:.1f} ms, service "
          f"{sequential.p50_ms:.1f} ms, difference {gap:+.1f} ms (target <= +3.0 ms)"
          f"{'' if gap <= 3 else '  MISSED'}")
    print(f"the bare engine on every core in one call (ALIGNSERVE_LANES=1): p50 "
          f"{wide_bare.p50_ms:.1f} ms; the service against it "
          f"{sequential.p50_ms - wide_bare.p50_ms:+.1f} ms")


if __name__ == "__main__":
    main()
