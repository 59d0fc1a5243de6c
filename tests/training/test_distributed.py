"""Data-parallel training: `torchrun` with two gloo processes on the two cores makes the same
model as one process with the same effective batch. Dropout is off in this backbone, so the
only difference left is the order of floating-point sums: the stated tolerance is 1e-5 on
every weight after 16 optimizer steps, and the same validation accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import TINY_TRAINING

TOLERANCE = 1e-5
FLAGS = [*TINY_TRAINING, "--batch-size", "4", "--grad-accum", "2", "--max-train-pairs", "128",
         "--threads", "1"]


@pytest.fixture(scope="module")
def no_dropout_backbone(tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertModel

    directory = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    model = BertModel.from_pretrained(tiny_backbone, hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.0)
    model.save_pretrained(directory)
    (directory / "tokenizer.json").write_bytes((tiny_backbone / "tokenizer.json").read_bytes())
    return directory


def train(command: list[str], output: Path, backbone: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*command, "train", "reward", "--output", str(output), "--backbone",
                           str(backbone), *FLAGS], env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def test_two_gloo_processes_match_one_process(no_dropout_backbone: Path, tmp_path: Path) -> None:
    alignserve = str(Path(sys.executable).parent / "alignserve")
    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--nproc-per-node", "2",
                "--standalone", "--no-python", alignserve]
    single = train([alignserve], tmp_path / "single", no_dropout_backbone)
    assert single.returncode == 0, single.stderr[-3000:]
    parallel = train(torchrun, tmp_path / "ddp", no_dropout_backbone)
    assert parallel.returncode == 0, (parallel.stdout + parallel.stderr)[-3000:]
    assert "data-parallel over 2 processes (gloo)" in parallel.stdout

    for name in ("head.safetensors", "encoder/model.safetensors"):
        ours = load_file(tmp_path / "single" / "model" / name)
        theirs = load_file(tmp_path / "ddp" / "model" / name)
        assert ours.keys() == theirs.keys()
        worst = max(float((ours[k] - theirs[k]).abs().max()) for k in ours)
        assert worst <= TOLERANCE, f"{name}: max |difference| {worst:.2e}"
    reports = [json.loads((tmp_path / run / "report.json").read_text())
               for run in ("single", "ddp")]
    assert reports[0]["training"]["steps"] == reports[1]["training"]["steps"] == 16
    assert reports[0]["eval"]["validation"]["accuracy"] == pytest.approx(
        reports[1]["eval"]["validation"]["accuracy"], abs=1e-3)


def test_grad_accum_must_divide_among_the_processes(no_dropout_backbone: Path,
                                                    tmp_path: Path) -> None:
    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--nproc-per-node", "2",
                "--standalone", "--no-python", str(Path(sys.executable).parent / "alignserve")]
    done = subprocess.run([*torchrun, "train", "reward", "--output", str(tmp_path / "odd"),
                           "--backbone", str(no_dropout_backbone), *TINY_TRAINING],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode != 0
    assert "--grad-accum 1 must be a multiple of the 2 processes" in done.stdout + done.stderr
