"""The engine on a CPU: one call on every core against lanes (calls side by side, each on its
share of the cores), and the token budget per call, in one process, on real hh-rlhf pairs.

    .venv/bin/python -m bench.engine_lanes --tag reward

For each (lanes, threads per session, token budget), `lanes` threads take the next request from
one shared list until it is empty, each scoring it as the service does (`models.session.run`:
sorted by length, cut into calls within the budget), on the stored graph the service loads:

- 1-pair requests (what 16 clients sending one pair each become);
- 32-pair requests of whole pairs (bench/serve.py's, mean ~106 tokens, 128 at most);
- best-of-32 requests: one short prompt with 32 short responses (bench/peers.py's);
- a lone pair, one at a time on one lane: p50 latency.

Prints items/s (two rounds) and CPU milliseconds per item, and writes nothing; the service's
defaults (service/runtime.py, INT8_CPU_LANES and BATCH_TOKENS) come from this table.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from bench.http_load import machine
from bench.peer_fastapi import tokenizer
from bench.peers import best_of_requests, short_pairs
from bench.serve import real_pairs
from models import store
from models.artifact import GRAPH_FILES
from models.inputs import EncodedPair
from models.session import open_session, run
from service.fronts import RewardFront
from service.runtime import CPU, choose, usable_cores
from service.settings import Settings

BUDGETS = (512, 128, 64)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def through(session: object, requests: Sequence[list[EncodedPair]], lanes: int, budget: int,
            pad_id: int) -> tuple[float, float]:
    """(items/s, CPU ms per item) with `lanes` callers taking requests from one list."""
    items = sum(map(len, requests))
    cpu, started = cpu_seconds(), time.perf_counter()
    with ThreadPoolExecutor(lanes) as pool:
        list(pool.map(lambda r: run(session, r, budget, pad_id), requests))
    elapsed = time.perf_counter() - started
    return items / elapsed, 1000 * (cpu_seconds() - cpu) / items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", default="reward", help="a stored reward model")
    parser.add_argument("--pairs", type=int, default=512, help="pairs per workload")
    parser.add_argument("--graph", default="auto", choices=["auto", "fp32", "int8"])
    args = parser.parse_args()
    stored = store.get(args.tag)
    front = RewardFront(stored.path, stored.manifest)
    graph, _ = choose(stored.path, Settings(graph=args.graph), [CPU])  # each config opens its own
    short = short_pairs(args.pairs, tokenizer(stored.path))
    whole = real_pairs(args.pairs)
    items = front.prepare([p for p, _ in whole], [r for _, r in whole])
    workloads: dict[str, list[list[EncodedPair]]] = {
        "1-pair requests": [[item] for item in items],
        "32-pair requests": [items[i:i + 32] for i in range(0, len(items), 32)],
        "best-of-32 requests": [front.prepare([p] * len(rs), rs)
                                for p, rs in best_of_requests(short)]}
    cores = usable_cores()
    # ... and two lanes sharing one session's pool of every core (lone calls get every core;
    # concurrent ones share the pool's threads)
    configs = [(1, cores)] + [(lanes, max(1, cores // lanes)) for lanes in (2, 3)
                              if lanes <= cores + 1] + ([(2, cores)] if cores > 1 else [])
    print(f"{store.resolve(args.tag)} ({graph.value}); {machine()}; {cores} usable cores")
    for lanes, threads in configs:
        session = open_session(stored.path / GRAPH_FILES[graph], threads=threads)
        pad = front.encoder.pad_id
        lone = []
        for item in items[:200]:
            started = time.perf_counter()
            run(session, [item], 512, pad)
            lone.append(time.perf_counter() - started)
        print(f"{lanes} lane(s) x {threads} thread(s): lone pair p50 "
              f"{statistics.median(lone) * 1000:.1f} ms")
        for name, requests in workloads.items():
            tokens = statistics.mean(len(i) for r in requests for i in r)
            for budget in BUDGETS if len(requests[0]) > 1 else BUDGETS[:1]:
                through(session, requests[:4], lanes, budget, pad)  # warm
                rounds = [through(session, requests, lanes, budget, pad) for _ in range(2)]
                label = f"{name} (mean {tokens:.0f} tokens)"
                budget_label = f"budget {budget:4d}" if len(requests[0]) > 1 else "alone"
                print(f"  {label:40} {budget_label:>11}: "
                      f"{rounds[0][0]:6.1f} {rounds[1][0]:6.1f} items/s, "
                      f"{statistics.mean(r[1] for r in rounds):5.2f} CPU ms/item", flush=True)


if __name__ == "__main__":
    main()
