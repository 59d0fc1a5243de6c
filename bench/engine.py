"""Engine benchmark: items/s of PyTorch eager, ONNX fp32, fused fp32 and int8, side by side.

    .venv/bin/python -m bench.engine --checkpoint runs/reward/model --artifact runs/reward/artifact

Every cell runs the same real hh-rlhf (prompt, response) inputs, cut to exactly the stated
number of tokens, at batch 1, 8 and 32; the engines take turns within a cell so that they share
the machine's state. Throughput is reported as a ratio to PyTorch eager, which is what carries
over from one machine to another; the absolute items/s belong to this machine only.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from models.artifact import FP32, INT8, TOKENIZER_FILE
from models.inputs import EncodedPair, PairEncoder, pad_batch
from models.manifest import Manifest
from models.session import OUTPUT_NAME, feeds, open_session
from training.data.reward_data import load_reward_data
from training.export import export_onnx
from training.modeling import ScoringModel
from training.scoring import to_torch

Runner = Callable[[dict[str, np.ndarray]], object]


def fixed_length_items(checkpoint: Path, length: int, count: int) -> list[EncodedPair]:
    """Real pairs long enough to fill `length` tokens after truncation."""
    manifest = Manifest.load(checkpoint)
    fmt = manifest.input.model_copy(update={"max_length": length})
    encoder = PairEncoder.from_file(checkpoint / TOKENIZER_FILE, fmt)
    pairs = load_reward_data(other_sources=False).splits["validation"]
    items = encoder.encode_batch([p.prompt for p in pairs], [p.chosen for p in pairs])
    full = [item for item in items if len(item) == length]
    if len(full) < count:
        raise SystemExit(f"only {len(full)} validation pairs reach {length} tokens")
    return full[:count]


def onnx_runner(graph: Path) -> Runner:
    session = open_session(graph)

    def run(arrays: dict[str, np.ndarray]) -> object:
        return session.run([OUTPUT_NAME], feeds(session, arrays))

    return run


def items_per_second(runner: Runner, batches: list[dict[str, np.ndarray]], size: int,
                     seconds: float) -> float:
    runner(batches[0])  # warm-up: allocations, kernel selection
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        runner(batches[done // size % len(batches)])
        done += size
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="trained model directory")
    parser.add_argument("--artifact", type=Path, required=True, help="exported artifact directory")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per cell")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256])
    args = parser.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    model = ScoringModel.load(args.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        raw = export_onnx(model, Path(tmp) / "raw.onnx")
        engines: dict[str, Runner] = {}

        @torch.inference_mode()
        def eager(arrays: dict[str, np.ndarray]) -> object:
            return model(**to_torch(arrays))

        engines["pytorch eager"] = eager
        graphs = {"onnx fp32": raw, "fused fp32": args.artifact / FP32,
                  "fused int8": args.artifact / INT8}
        for name, graph in graphs.items():
            if not graph.exists():
                print(f"skipping {name}: {graph} does not exist (int8 rejected at export?)")
                continue
            engines[name] = onnx_runner(graph)

        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
              f"{args.seconds:g} s per cell; items/s (ratio to PyTorch eager)")
        header = f"{'tokens':>6} {'batch':>5} " + "".join(f"{name:>22}" for name in engines)
        print(header)
        for length in args.lengths:
            items = fixed_length_items(args.checkpoint, length, max(args.batches) * 4)
            for size in args.batches:
                batches = [pad_batch(items[i:i + size]) for i in range(0, len(items), size)]
                rates = {name: items_per_second(run, batches, size, args.seconds)
                         for name, run in engines.items()}
                base = rates["pytorch eager"]
                print(f"{length:>6} {size:>5} " + "".join(
                    f"{f'{rate:8.1f} ({rate / base:4.2f}x)':>22}" for rate in rates.values()),
                    flush=True)


if __name__ == "__main__":
    main()
