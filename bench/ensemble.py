"""What an ensemble reward model gains over one member, and what it costs.

    .venv/bin/python -m bench.ensemble --members runs/A/model runs/B/model runs/C/model \
        --output runs/ensemble

Builds the ensemble of the members (`alignserve ensemble`: calibrated and evaluated on every
set as the members' mean; skipped when OUTPUT/model exists), puts its accuracy and ECE beside
each member's (from their manifests: the same sets, the same code), then measures pairs/s of a
member's fused fp32 graph and the ensemble's (one graph, k outputs) side by side on the same
real hh-rlhf test pairs, the two graphs taking turns. Writes OUTPUT/bench.json.
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

from models.artifact import TOKENIZER_FILE
from models.inputs import PairEncoder
from models.manifest import Manifest
from models.session import open_session, run
from training.data.reward_data import load_reward_data
from training.ensemble import HEADLINE, build_ensemble
from training.export import export_onnx, fuse
from training.modeling import load_model, num_outputs


def fused_graph(checkpoint: Path, directory: Path) -> Path:
    model = load_model(checkpoint)
    raw = export_onnx(model, directory / "raw.onnx")
    fuse(raw, directory / "model.onnx", model.config.num_attention_heads,
         model.config.hidden_size, members=num_outputs(model))
    return directory / "model.onnx"


def pairs_per_second(graph: Path, items: list[Any], pad_id: int, rounds: int) -> list[float]:
    session = open_session(graph)
    run(session, items[:32], pad_id=pad_id)  # warm-up
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        run(session, items, pad_id=pad_id)
        out.append(len(items) / 2 / (time.perf_counter() - started))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=Path, nargs="+", required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=256, help="hh-rlhf test pairs timed.")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    if not (args.output / "model" / "manifest.json").exists():
        build_ensemble(args.members, args.output, "reward-ensemble")
    ensemble = Manifest.load(args.output / "model")
    members = [Manifest.load(m) for m in args.members]
    quality: dict[str, dict[str, Any]] = {name: {"ensemble": ensemble.metrics[name],
                      "members": [m.metrics.get(name, {}) for m in members]}
               for name in HEADLINE if name in ensemble.metrics}

    encoder = PairEncoder.from_file(args.members[0] / TOKENIZER_FILE, members[0].input)
    pairs = load_reward_data(other_sources=False).eval_sets["hh-rlhf"][:args.pairs]
    items = encoder.encode_batch([p.prompt for p in pairs] * 2,
                                 [p.chosen for p in pairs] + [p.rejected for p in pairs])
    speed: dict[str, list[float]] = {"member": [], "ensemble": []}
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {}
        for key, checkpoint in (("member", args.members[0]), ("ensemble", args.output / "model")):
            (Path(tmp) / key).mkdir()
            graphs[key] = fused_graph(checkpoint, Path(tmp) / key)
        for _ in range(args.rounds):  # taking turns, so both see the same machine
            for key, graph in graphs.items():
                speed[key] += pairs_per_second(graph, items, encoder.pad_id, 1)
    best = {k: max(v) for k, v in speed.items()}
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor()}",
              "members": [str(m) for m in args.members], "quality": quality,
              "pairs_per_second": speed, "throughput_ratio": best["ensemble"] / best["member"],
              "timed_pairs": len(pairs), "graph": "fused fp32, onnxruntime CPU"}
    (args.output / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'set':24s} {'ensemble acc / ECE':>20s}   members")
    for name, q in quality.items():
        e = q["ensemble"]
        print(f"{name:24s} {e['accuracy']:8.1%} / {e.get('ece', float('nan')):.3f}   " +
              ", ".join(f"{m.get('accuracy', float('nan')):.1%} / {m.get('ece', float('nan')):.3f}"
                        for m in q["members"]))
    print(f"pairs/s (best of {args.rounds}): member {best['member']:.1f}, ensemble "
          f"{best['ensemble']:.1f} ({result['throughput_ratio']:.2f}x)")
    print(f"written to {args.output / 'bench.json'}")


if __name__ == "__main__":
    main()
