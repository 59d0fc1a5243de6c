"""The engine's token budget per onnxruntime call (ALIGNSERVE_MAX_BATCH_TOKENS) against its
speed, in one process, on two workloads of real hh-rlhf pairs:

- best-of-32 requests: one short prompt with 32 short responses (bench/peers.py's, mean ~50
  tokens);
- 32-pair requests of whole pairs (bench/serve.py's, mean ~106 tokens, 128 at most).

    .venv/bin/python -m bench.batch_tokens --tag reward

Each request is scored as the service scores it (`models.session.run`: sorted by length, cut
into batches within the budget), every budget in turn, two rounds, on the stored graph the
service would load.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.peer_fastapi import tokenizer
from bench.peers import best_of_requests, short_pairs
from bench.serve import real_pairs
from models import store
from models.inputs import EncodedPair
from models.session import run
from service.runtime import RewardRuntime
from service.settings import Settings

BUDGETS = (8192, 4096, 1024, 512, 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="reward", help="a stored reward model")
    parser.add_argument("--pairs", type=int, default=512, help="pairs per workload")
    args = parser.parse_args()
    stored = store.get(args.tag)
    # one caller on every core (bench/engine_lanes.py compares lanes)
    runtime = RewardRuntime(stored.path, stored.manifest, Settings(lanes=1))
    short = short_pairs(args.pairs, tokenizer(stored.path))
    best_of = [runtime.front.prepare([p] * len(rs), rs) for p, rs in best_of_requests(short)]
    whole = real_pairs(args.pairs)
    items = runtime.front.prepare([p for p, _ in whole], [r for _, r in whole])
    workloads: dict[str, list[list[EncodedPair]]] = {
        "best-of-32 requests": best_of,
        "32-pair requests": [items[i:i + 32] for i in range(0, len(items), 32)]}
    print(f"{store.resolve(args.tag)} ({runtime.engine.graph.value}, "
          f"{runtime.engine.provider})")
    for name, requests in workloads.items():
        tokens = statistics.mean(len(i) for r in requests for i in r)
        print(f"{name}, mean {tokens:.0f} tokens: items/s by token budget, two rounds")
        for budget in BUDGETS:
            rates = []
            for _ in range(2):
                started = time.perf_counter()
                for request in requests:
                    run(runtime.engine.session, request, budget, runtime.engine.pad_id)
                rates.append(sum(map(len, requests)) / (time.perf_counter() - started))
            print(f"  {budget:5d}: {rates[0]:6.1f} {rates[1]:6.1f}", flush=True)


if __name__ == "__main__":
    main()
