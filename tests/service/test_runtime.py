"""The serving runtime on the tiny exported model: graph choice, batch invariance, answers."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from models.artifact import Quantisation
from models.manifest import Manifest
from service.fronts import RewardFront
from service.runtime import (
    CPU,
    CUDA,
    Engine,
    Lanes,
    Lone,
    RewardRuntime,
    cgroup_cpu_limit,
    choose,
    lanes_for,
    usable_cores,
)
from service.settings import Graph, Settings

PROMPTS = ["hello", "what is the weather today please", "help me with my card refund " * 6]
RESPONSES = ["good answer", "sorry i can not help", "the refund will arrive in a day " * 4]


@pytest.fixture(scope="module")
def runtime(tiny_artifact: Path) -> RewardRuntime:
    return RewardRuntime(tiny_artifact, Manifest.load(tiny_artifact), Settings(graph=Graph.fp32))


def test_graph_choice(tiny_artifact: Path, tmp_path: Path) -> None:
    has_int8 = (tiny_artifact / "model.int8.onnx").exists()
    expected = Graph.int8 if has_int8 else Graph.fp32
    assert choose(tiny_artifact, Settings(), [CPU]) == (expected, [CPU])
    assert choose(tiny_artifact, Settings(), [CUDA, CPU]) == (Graph.fp16, [CUDA, CPU])
    with pytest.raises(RuntimeError, match="no CUDA provider"):
        choose(tiny_artifact, Settings(provider="cuda"), [CPU])
    (tmp_path / "model.onnx").touch()
    with pytest.raises(RuntimeError, match=r"has no model\.int8\.onnx"):
        choose(tmp_path, Settings(graph=Graph.int8), [CPU])


def test_lanes_share_the_cores_and_set_the_token_budget() -> None:
    """On a CPU an int8 graph runs two lanes sharing the cores, a one-thread lane items alone
    (64 tokens); fp32 one call on every core, batched within 512; CUDA one lane of large
    batches."""
    int8, fp32, fp16 = Quantisation.int8, Quantisation.fp32, Quantisation.fp16
    assert lanes_for(Settings(), int8, cuda=False, cores=2) == Lanes(2, 1, 64, 2)
    assert lanes_for(Settings(), int8, cuda=False, cores=1) == Lanes(1, 1, 64)
    assert lanes_for(Settings(), int8, cuda=False, cores=8) == Lanes(2, 4, 512, 8)
    assert lanes_for(Settings(), fp32, cuda=False, cores=2) == Lanes(1, 2, 512)
    assert lanes_for(Settings(), fp16, cuda=True, cores=8) == Lanes(1, None, 8192)
    assert lanes_for(Settings(lanes=1), int8, cuda=False, cores=2) == Lanes(1, 2, 512)
    assert lanes_for(Settings(lanes=3, threads=2, max_batch_tokens=256), fp32, cuda=False,
                     cores=2) == Lanes(3, 2, 256)
    # A lone call's threads: off, or as many as asked.
    assert lanes_for(Settings(lone_call_threads=0), int8, cuda=False, cores=2) == Lanes(2, 1, 64)
    assert lanes_for(Settings(lone_call_threads=3), int8, cuda=False, cores=8
                     ) == Lanes(2, 4, 512, 3)
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


def test_usable_cores_follow_a_containers_cpu_limit(tmp_path: Path) -> None:
    """cgroup v2's cpu.max, else v1's quota over period; no limit: the CPU affinity."""
    affinity = len(os.sched_getaffinity(0))
    v2, v1 = tmp_path / "v2", tmp_path / "v1"
    v2.mkdir()
    (v1 / "cpu").mkdir(parents=True)
    (v2 / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    assert cgroup_cpu_limit(v2) == 1.5
    assert usable_cores(v2) == min(affinity, 2)
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(v2) is None and usable_cores(v2) == affinity
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(v1) == 0.5 and usable_cores(v1) == 1
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(v1) is None
    assert cgroup_cpu_limit(tmp_path / "none") is None


def test_score_is_independent_of_batch_company(runtime: RewardRuntime) -> None:
    together = runtime.score(PROMPTS, RESPONSES)
    alone = [runtime.score([p], [r])[0] for p, r in zip(PROMPTS, RESPONSES, strict=True)]
    for a, b in zip(together, alone, strict=True):
        assert abs(a.reward - b.reward) <= 1e-4 and a.tokens == b.tokens
    reordered = runtime.score(PROMPTS[::-1], RESPONSES[::-1])[::-1]
    assert np.allclose([s.reward for s in reordered], [s.reward for s in together], atol=1e-4)


def test_post_processing(runtime: RewardRuntime) -> None:
    scores = runtime.score(PROMPTS, RESPONSES)
    front = runtime.front
    for s in scores:
        assert s.normalised == pytest.approx((s.reward - front.mean) / front.std, abs=1e-5)
    a, b = scores[0].reward, scores[1].reward
    t = runtime.front.temperature or 1.0
    assert runtime.front.preference(a, b) == pytest.approx(1 / (1 + np.exp(-(a - b) / t)))
    assert runtime.front.preference(a, b) + runtime.front.preference(b, a) == pytest.approx(1.0)
    probs = runtime.front.rank_probabilities([s.reward for s in scores])
    assert probs.sum() == pytest.approx(1.0)
    assert list(np.argsort(-probs)) == list(np.argsort([-s.reward for s in scores]))


def test_truncation_is_reported_and_warm_up_runs(runtime: RewardRuntime) -> None:
    (long,) = runtime.score(["weather " * 200], ["good"])
    assert long.prompt_truncated and not long.response_truncated
    assert long.tokens == runtime.front.manifest.input.max_length
    runtime.engine.warm_up(runtime.front)


def test_the_plain_peer_scores_as_the_service_does(runtime: RewardRuntime, trained_run: Path
                                                   ) -> None:
    """bench/peers.py checks every server against the PyTorch model; for that check to mean
    anything, the FastAPI peer must score exactly as the served graph does (short pairs)."""
    from bench.peer_fastapi import RewardModel

    peer = RewardModel(trained_run / "model", max_length=runtime.front.manifest.input.max_length)
    served = [s.reward for s in runtime.score(PROMPTS[:2], RESPONSES[:2])]
    np.testing.assert_allclose(peer.score(PROMPTS[:2], RESPONSES[:2]), served, atol=1e-4)


@pytest.fixture(scope="module")
def lone_engine(tiny_artifact: Path) -> Engine:
    """Two one-thread lanes and a lone call on two threads, whatever this machine's cores."""
    front = RewardFront(tiny_artifact, Manifest.load(tiny_artifact))
    settings = Settings(graph=Graph.fp32, lanes=2, threads=1, lone_call_threads=2)
    return Engine(tiny_artifact, settings, front.encoder.pad_id)


def test_a_call_alone_runs_on_every_core_with_the_lanes_scores(lone_engine: Engine,
                                                                 runtime: RewardRuntime) -> None:
    """Alone, a call takes the second session; with another call in flight, its lane's; the
    scores are the same either way (the batch queue relies on knowing which ran)."""
    items = runtime.front.prepare(PROMPTS, RESPONSES)
    assert lone_engine.lanes == Lanes(2, 1, 64, 2)
    alone, lone = lone_engine.call(items)
    assert lone.items == len(items) and lone.seconds > 0
    with lone_engine.calls.call():  # another call in flight
        beside, lone = lone_engine.call(items)
    assert lone == Lone()
    np.testing.assert_allclose(alone, beside, atol=1e-6)
    np.testing.assert_allclose(alone, runtime.engine.core(items), atol=1e-4)
    lone_engine.warm_up(runtime.front)  # both sessions


def test_a_call_waits_for_a_lone_one_to_finish(lone_engine: Engine, runtime: RewardRuntime
                                               ) -> None:
    """A call never runs beside a lone call (three threads on two cores): it waits for it."""
    items = runtime.front.prepare(PROMPTS[:1], RESPONSES[:1])
    calls = lone_engine.calls
    with calls.changed:
        calls.lone_running = True  # as if another call's engine call ran on every core

    def finish() -> None:
        with calls.changed:
            calls.lone_running = False
            calls.changed.notify_all()

    timer = threading.Timer(0.2, finish)
    started = time.perf_counter()
    timer.start()
    lone_engine.call(items)
    assert time.perf_counter() - started >= 0.2
    timer.join()


def test_no_lone_session_for_one_lane(tiny_artifact: Path, runtime: RewardRuntime) -> None:
    engine = Engine(tiny_artifact, Settings(graph=Graph.fp32, lanes=1),
                    runtime.front.encoder.pad_id)
    assert engine.calls.lone is None
    assert engine.call(runtime.front.prepare(PROMPTS, RESPONSES))[1] == Lone()
