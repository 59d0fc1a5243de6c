"""`alignserve score` throughput on real data: the hh-rlhf test split (every chosen and every
rejected reply, as (messages, response) records), scored locally with the ONNX engine (with the
engine's own batches, and with the 16,384-token batches offline scoring used before) and on a
local Ray cluster with 1 and 2 workers, side by side in one run; checks that every mode wrote
the same scores.

    .venv/bin/python -m bench.offline_scoring --model reward \
        --output bench/results/offline-scoring-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from service import offline, shards
from training.data.reward_data import HH, load_reward_data


def hh_test_records() -> list[dict[str, Any]]:
    data = load_reward_data(other_sources=False)
    out = []
    for i, pair in enumerate(data.eval_sets[HH]):
        messages = ([{"role": "user", "content": pair.prompt}] if isinstance(pair.prompt, str)
                    else [{"role": m.role, "content": m.content} for m in pair.prompt])
        for side, response in (("chosen", pair.chosen), ("rejected", pair.rejected)):
            out.append({"pair": i, "side": side, "messages": messages, "response": response})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="reward", help="A reward model in the store.")
    parser.add_argument("--shard-size", type=int, default=200)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    records = hh_test_records()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "hh-rlhf-test.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in records))
        runs: dict[str, dict[str, Any]] = {}
        scores: dict[str, list[float]] = {}
        for mode, workers, tokens in (
                ("local", 0, None), ("local, 16,384-token batches (before)", 0, 16384),
                ("ray, 1 worker", 1, None), ("ray, 2 workers", 2, None)):
            plan = shards.plan(source, Path(tmp) / f"run{len(runs)}", args.shard_size)
            plan.output.mkdir()
            started = time.perf_counter()
            if workers:
                offline.run_ray(args.model, plan, workers)
            else:
                offline.run_local(args.model, plan, batch_tokens=tokens)
            seconds = time.perf_counter() - started
            scores[mode] = [r["reward"] for r in shards.merged(plan)]
            runs[mode] = {"seconds": round(seconds, 1),
                          "records_per_second": round(len(records) / seconds, 1)}
            print(f"{mode}: {len(records)} records in {seconds:.1f} s "
                  f"({len(records) / seconds:.1f}/s)", flush=True)
    reference = scores["local"]
    for mode, values in scores.items():
        worst = max(abs(a - b) for a, b in zip(values, reference, strict=True))
        runs[mode]["max_abs_diff_vs_local"] = worst
        assert worst < 1e-4, f"{mode} scored differently from local (max diff {worst})"
    result = {"model": args.model, "records": len(records), "shard_size": args.shard_size,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "note": "Ray times include starting the local cluster and one engine per actor",
              "runs": runs}
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
