"""Does a reward artifact's int8 graph score the same on every x86 CPU it may be served on?

The export's int8 gate runs on the machine that exports; a container then runs on whatever CPU
its node has. onnxruntime's x86 int8 kernels multiply uint8 activations by int8 weights; with
AVX-512 VNNI (or AVX-VNNI) the products are summed in 32 bits, but on a CPU with AVX2 alone
they are summed in pairs into 16 bits first (VPMADDUBSW), which saturates when both weights of a
pair are large. Weights quantised to 7 bits (`reduce_range`) cannot saturate there.

This scores validation pairs of a stored reward model (the first of the export's own check, in
its order) with its fused fp32 graph quantised both ways, here and under QEMU's user-mode
emulation of a CPU without AVX-512 (`qemu-x86_64 -cpu Haswell-v4`: AVX2 and FMA, no VNNI;
Debian's `qemu-user`), in the same batches, and says how far each graph's rewards and compare's
P move between the two CPUs. Emulated AVX2 is slow (about 0.15 items/s on the 2-core machine),
so the default is a small sample; fp32 is not emulated (its kernels round the same sums in
another order, about 1e-6 apart).

    .venv/bin/python -m bench.int8_portability --tag reward --pairs 32 \
        --out bench/results/int8-portability-cpu.json
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.calibration import reward_of, sigmoid
from models.inputs import EncodedPair
from models.session import open_session, run
from training.int8_gate import BOOTSTRAP_SEED, INT8_DECIDED_MARGIN, pair_margins

GRAPHS = {"8-bit weights (the export before 2026-12-05)": False,
          "7-bit weights (reduce_range, the export now)": True}
ITEMS, OUTPUTS = "items.pkl", "{cpu}.npz"


def score(workdir: Path, cpu: str, threads: int) -> None:
    """The child: every graph in `workdir` on its items, in the export check's batches (the same
    on both CPUs: dynamic int8 scales a batch's activations together), and the features of the
    CPU it runs on. Imports no torch, so that it starts in minutes under emulation."""
    with open(workdir / ITEMS, "rb") as f:
        items, pad_id = pickle.load(f)
    out: dict[str, Any] = {"features": cpu_features()}
    for i in range(len(GRAPHS)):
        session = open_session(workdir / f"graph{i}.onnx", threads=threads)
        started = time.perf_counter()
        out[f"graph{i}"] = run(session, items, pad_id=pad_id)
        print(f"{cpu}: graph {i}, {len(items)} items in {time.perf_counter() - started:.0f} s",
              flush=True)
    np.savez(workdir / OUTPUTS.format(cpu=cpu), **out)


def cpu_features() -> str:
    from numpy._core._multiarray_umath import __cpu_features__ as features

    wanted = ("AVX2", "AVX512F", "AVX512VNNI", "AVX_VNNI", "AVX512_SPR")
    return " ".join(f for f in wanted if features.get(f)) or "none of AVX2, AVX-512"


def prepare(tag: str, pairs: int, workdir: Path) -> tuple[int, float, np.ndarray]:
    """The first `pairs` validation pairs in the gate's order, both int8 graphs, and the fp32
    graph's outputs on the pairs' items (here: fp32 is the reference the gate compares with)."""
    from models import store
    from models.artifact import FP32, TOKENIZER_FILE
    from models.inputs import PairEncoder
    from training.checks import validation_check
    from training.export import quantise_int8

    stored = store.get(tag)
    encoder = PairEncoder.from_file(stored.path / TOKENIZER_FILE, stored.manifest.input)
    check = validation_check(stored.manifest, encoder)
    rows = np.random.default_rng(BOOTSTRAP_SEED).permutation(check.examples)[:pairs]
    items: list[EncodedPair] = [check.items[i] for i in check.item_rows(rows)]
    with open(workdir / ITEMS, "wb") as f:
        pickle.dump((items, encoder.pad_id), f)
    for i, reduce_range in enumerate(GRAPHS.values()):
        quantise_int8(stored.path / FP32, workdir / f"graph{i}.onnx", reduce_range=reduce_range)
    fp32 = run(open_session(stored.path / FP32), items, pad_id=encoder.pad_id)
    return len(rows), stored.manifest.temperature or 1.0, fp32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="reward", help="a stored reward model")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--cpu", default="Haswell-v4", help="QEMU's name of the emulated CPU")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--score", type=Path, help=argparse.SUPPRESS)  # the child's workdir
    parser.add_argument("--as-cpu", default="native", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.score:
        score(args.score, args.as_cpu, args.threads)
        return
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        sys.exit("int8_portability: qemu-x86_64 is missing (Debian: apt-get install qemu-user)")
    with tempfile.TemporaryDirectory(prefix="alignserve-int8-cpus-") as tmp:
        workdir = Path(tmp)
        n, temperature, fp32 = prepare(args.tag, args.pairs, workdir)
        child = [sys.executable, "-m", "bench.int8_portability", "--score", str(workdir),
                 "--threads", str(args.threads)]
        subprocess.run([*child, "--as-cpu", "native"], check=True)
        emulated = subprocess.run([qemu, "-cpu", args.cpu, *child, "--as-cpu", args.cpu],
                                  stderr=subprocess.PIPE, text=True)
        if emulated.returncode != 0:
            sys.exit("int8_portability: the emulated run failed:\n" + "\n".join(
                line for line in emulated.stderr.splitlines()
                if "TCG doesn't support" not in line))
        scores = {cpu: dict(np.load(workdir / OUTPUTS.format(cpu=cpu)))
                  for cpu in ("native", args.cpu)}
    result = compare(args.tag, args.cpu, n, temperature, fp32, scores)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def compare(tag: str, cpu: str, n: int, temperature: float, fp32: np.ndarray,
            scores: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    """Each graph's rewards, compare's P and pair orders on this CPU against `cpu`'s; printed,
    and returned for the results file."""
    pairs = np.arange(n)
    reference = pair_margins(fp32, pairs, n)
    decided = np.abs(sigmoid(reference / temperature) - 0.5) >= INT8_DECIDED_MARGIN
    result: dict[str, Any] = {
        "tag": tag, "pairs": n, "items": 2 * n, "temperature": temperature,
        "decided_pairs": int(decided.sum()), "native_cpu": str(scores["native"]["features"]),
        "emulated_cpu": f"{cpu} ({scores[cpu]['features']})", "graphs": {},
        "rewards": {"fp32 (native)": reward_of(fp32).round(5).tolist()}}
    print(f"{n} validation pairs of {tag}, {int(decided.sum())} of them decided by fp32 "
          f"(P at least {INT8_DECIDED_MARGIN} from even); this CPU: {result['native_cpu']}; "
          f"emulated: {result['emulated_cpu']}")
    for i, name in enumerate(GRAPHS):
        a, b = scores["native"][f"graph{i}"], scores[cpu][f"graph{i}"]
        margin_a, margin_b = pair_margins(a, pairs, n), pair_margins(b, pairs, n)
        alike = (margin_a > 0) == (margin_b > 0)
        moved = np.abs(reward_of(a) - reward_of(b))
        row: dict[str, Any] = {
            "reward_moved_max": float(moved.max()),
            "reward_moved_median": float(np.median(moved)),
            "compare_p_moved_max": float(np.abs(sigmoid(margin_a / temperature)
                                                - sigmoid(margin_b / temperature)).max()),
            "pairs_ordered_alike": int(alike.sum()),
            "decided_pairs_ordered_alike": int(alike[decided].sum()),
            "decided_pairs_order_kept_vs_fp32": {
                label: int(((reference > 0) == (margin > 0))[decided].sum())
                for label, margin in (("native", margin_a), (cpu, margin_b))}}
        result["graphs"][name] = row
        result["rewards"][f"{name}: native"] = reward_of(a).round(5).tolist()
        result["rewards"][f"{name}: {cpu}"] = reward_of(b).round(5).tolist()
        kept = row["decided_pairs_order_kept_vs_fp32"]
        print(f"{name}: rewards moved by up to {row['reward_moved_max']:.3f} (median "
              f"{row['reward_moved_median']:.3f}), compare's P by up to "
              f"{row['compare_p_moved_max']:.3f}; the two CPUs order {row['pairs_ordered_alike']}"
              f" of {n} pairs alike ({row['decided_pairs_ordered_alike']} of the "
              f"{int(decided.sum())} decided); fp32's order of the decided pairs kept: "
              f"{kept['native']} here, {kept[cpu]} on {cpu}")
    return result


if __name__ == "__main__":
    main()
