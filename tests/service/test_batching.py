"""The batch queue on the tiny model's real engine: merging, exactness, admission."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from models.manifest import Manifest
from service.batching import PACE_WINDOW, Batcher
from service.errors import ErrorType, ServiceError
from service.fronts import RewardFront
from service.runtime import Engine, Lone
from service.settings import Graph, Settings


@pytest.fixture(scope="module")
def parts(tiny_artifact: Path) -> tuple[RewardFront, Engine]:
    front = RewardFront(tiny_artifact, Manifest.load(tiny_artifact))
    return front, Engine(tiny_artifact, Settings(graph=Graph.fp32), front.encoder.pad_id)


def items(front: RewardFront, count: int, words: int = 5) -> list:
    return front.prepare([f"question {k} " * words for k in range(count)],
                         [f"answer {k} " * (1 + k % 7) for k in range(count)])


def test_concurrent_requests_share_a_batch_and_keep_their_own_scores(
        parts: tuple[RewardFront, Engine]) -> None:
    front, engine = parts
    big = items(front, 300, words=30)
    smalls = [items(front, k + 1) for k in range(5)]

    async def scenario() -> list:
        batcher = Batcher(engine, "tiny", max_batch_size=64, max_latency_ms=0,
                          max_queued_items=10_000, max_queue_wait_ms=60_000)
        results = await asyncio.gather(batcher.run(big), *(batcher.run(s) for s in smalls))
        assert batcher.queued_items == 0
        return results

    big_result, *small_results = asyncio.run(scenario())
    # The big job ran alone; the five small ones queued behind it and ran as one batch.
    assert len({r.inference_s for r in small_results}) == 1
    assert all(r.queue_s >= big_result.inference_s * 0.5 for r in small_results)
    for job, result in zip([big, *smalls], [big_result, *small_results], strict=True):
        assert np.allclose(result.outputs, engine.core(job), atol=1e-4)


def test_lanes_run_batches_side_by_side_and_share_the_expected_wait(
        parts: tuple[RewardFront, Engine]) -> None:
    """With two lanes a second big job does not wait for the first: both run at once, each
    with its own exact scores; the queue's expected wait counts both lanes."""
    front, engine = parts
    jobs = [items(front, 300, words=30), items(front, 300, words=31)]

    async def scenario(lanes: int) -> list:
        batcher = Batcher(engine, "tiny", max_batch_size=64, max_latency_ms=0,
                          max_queued_items=10_000, max_queue_wait_ms=60_000, lanes=lanes)
        results = await asyncio.gather(*(batcher.run(job) for job in jobs))
        await batcher.close()
        return results

    one = asyncio.run(scenario(1))
    assert one[1].queue_s >= one[0].inference_s * 0.5  # one lane: the second waited
    two = asyncio.run(scenario(2))
    assert two[1].queue_s < two[0].inference_s * 0.5  # two lanes: it started at once
    for job, result in zip(jobs, two, strict=True):
        assert np.allclose(result.outputs, engine.core(job), atol=1e-4)
    batcher = Batcher(engine, "tiny", 64, 0, 1000, lanes=2)
    batcher.seconds_per_item = 0.01
    assert batcher.drain_s(300) == pytest.approx(1.5)
    assert Batcher(engine, "tiny", 64, 0, 1000).lanes == engine.lanes.count  # the default


def test_a_full_queue_answers_429_at_once(parts: tuple[RewardFront, Engine]) -> None:
    front, engine = parts

    async def scenario() -> ServiceError:
        batcher = Batcher(engine, "tiny", max_batch_size=64, max_latency_ms=0,
                          max_queued_items=100)
        first = asyncio.ensure_future(batcher.run(items(front, 400)))  # admitted: queue empty
        await asyncio.sleep(0)
        with pytest.raises(ServiceError) as refused:
            await batcher.run(items(front, 1))
        await first
        assert batcher.queued_items == 0
        await batcher.run(items(front, 1))  # the queue drained: admitted again
        return refused.value

    error = asyncio.run(scenario())
    assert error.error_type is ErrorType.overloaded and error.status == 429
    assert int(error.headers()["Retry-After"]) >= 1


def test_an_idle_engine_waits_for_company_only_when_asked(
        parts: tuple[RewardFront, Engine]) -> None:
    front, engine = parts

    async def queue_wait(wait_ms: float) -> float:
        batcher = Batcher(engine, "tiny", 64, wait_ms, 1000)
        return (await batcher.run(items(front, 1))).queue_s

    assert asyncio.run(queue_wait(0)) < 0.02
    assert asyncio.run(queue_wait(50)) >= 0.045


def test_admission_is_by_expected_wait_and_the_deadline_header(
        parts: tuple[RewardFront, Engine]) -> None:
    """A request is refused at once when the queue ahead of it would not be through within its
    deadline (the setting, or X-Deadline-Ms when smaller), with the wait's excess as
    Retry-After."""
    from service.deadline import DEADLINE

    front, engine = parts

    async def scenario() -> tuple[ServiceError, ServiceError, float]:
        batcher = Batcher(engine, "tiny", max_batch_size=64, max_latency_ms=0,
                          max_queued_items=100_000, max_queue_wait_ms=2000)
        batcher.seconds_per_item = 0.01  # the pace the queue has learnt
        first = asyncio.ensure_future(batcher.run(items(front, 400)))  # an empty queue admits
        await asyncio.sleep(0)
        with pytest.raises(ServiceError) as late:  # (400 + 10) x 10 ms = 4.1 s > 2 s
            batcher.admit(10)
        token = DEADLINE.set(0.5)  # X-Deadline-Ms: 500
        try:
            with pytest.raises(ServiceError) as asked:
                batcher.admit(1)  # 4.01 s > 0.5 s
            deadline = batcher.deadline_s()
        finally:
            DEADLINE.reset(token)
        await first
        return late.value, asked.value, deadline

    late, asked, deadline = asyncio.run(scenario())
    assert late.status == 429 and "past this request's deadline of 2.0 s" in late.message
    assert late.headers()["Retry-After"] == "3"  # 4.1 - 2.0, rounded up
    assert asked.headers()["Retry-After"] == "4" and deadline == 0.5


def test_a_job_whose_deadline_passes_in_the_queue_is_answered_not_run_late(
        parts: tuple[RewardFront, Engine]) -> None:
    from service.deadline import DEADLINE

    front, engine = parts

    async def scenario() -> ServiceError:
        batcher = Batcher(engine, "tiny", max_batch_size=64, max_latency_ms=0,
                          max_queued_items=100_000, max_queue_wait_ms=60_000)
        batcher.seconds_per_item = 1e-7  # a pace that admits anything: the estimate is wrong
        first = asyncio.ensure_future(batcher.run(items(front, 3000, words=30)))
        await asyncio.sleep(0)
        token = DEADLINE.set(0.001)
        try:
            with pytest.raises(ServiceError) as expired:
                await batcher.run(items(front, 1))
        finally:
            DEADLINE.reset(token)
        await first
        assert batcher.queued_items == 0
        return expired.value

    error = asyncio.run(scenario())
    assert error.status == 429 and "past its deadline" in error.message


def test_a_job_admitted_by_an_idle_engine_keeps_its_deadline_when_it_fits(
        parts: tuple[RewardFront, Engine]) -> None:
    """An idle engine refuses nothing, but a request that fits its deadline keeps it: held in
    the queue past it (here a blocked event loop, as at a storm's first instant) it is answered
    429, not run late; one that cannot be in time even alone still runs."""
    front, engine = parts

    async def scenario() -> tuple[ServiceError, int]:
        batcher = Batcher(engine, "tiny", max_batch_size=64, max_latency_ms=0,
                          max_queued_items=100_000, max_queue_wait_ms=100)
        batcher.seconds_per_item = 0.001
        held = asyncio.ensure_future(batcher.run(items(front, 1)))
        await asyncio.sleep(0)  # admitted and queued; its lane not yet run
        time.sleep(0.15)  # the event loop busy past the 100 ms deadline
        with pytest.raises(ServiceError) as expired:
            await held
        assert batcher.queued_items == 0  # its place given back
        batcher.seconds_per_item = 0.01  # 20 items: 0.2 s alone, past the 0.1 s deadline
        oversized = await batcher.run(items(front, 20))
        return expired.value, len(oversized.outputs)

    error, scored = asyncio.run(scenario())
    assert error.status == 429 and "past its deadline" in error.message
    assert scored == 20


def test_the_deadline_counts_time_in_the_server_and_the_loop_lag(
        parts: tuple[RewardFront, Engine]) -> None:
    """A caller's deadline also covers the time since the request reached the app and the event
    loop's lag, once for each wait in the loop (LAG_WAITS: before the app reads it, when its
    tokens and its result wake it, on its answer's way out)."""
    from service.deadline import ARRIVED, LAG_WAITS, LOOP_LAG

    _, engine = parts

    async def scenario() -> tuple[float, float]:
        batcher = Batcher(engine, "tiny", max_batch_size=64, max_latency_ms=0,
                          max_queued_items=100_000, max_queue_wait_ms=2000)
        ARRIVED.set(time.perf_counter() - 0.3)
        LOOP_LAG.start()
        await asyncio.sleep(0)
        time.sleep(0.3)  # a blocked loop: the lag task runs late
        await asyncio.sleep(0.1)
        lag = LOOP_LAG.current()
        return batcher.deadline_s(), lag

    deadline, lag = asyncio.run(scenario())
    assert lag > 0.01
    waits = LAG_WAITS * lag
    assert 2.0 - 0.3 - 0.4 - waits - 0.05 < deadline < 2.0 - 0.3 - 0.4 - waits + 0.01


def test_the_queue_plans_with_a_slow_recent_batch_not_a_typical_one(
        parts: tuple[RewardFront, Engine]) -> None:
    """The trend moves half-way to a slower batch at once and a tenth of the way to a faster
    one; the queue plans with it or, when higher, the 90th percentile of the recent batches, so
    one slow batch in eight is what admission and deadlines expect."""
    _, engine = parts
    batcher = Batcher(engine, "tiny", 64, 0, 100_000)
    batcher.pace_trend = 0.01
    batcher._learn_pace(0.03)
    assert batcher.pace_trend == pytest.approx(0.02)
    assert batcher.seconds_per_item == pytest.approx(0.03)  # the one batch seen
    batcher._learn_pace(0.01)
    assert batcher.pace_trend == pytest.approx(0.019)
    for _ in range(PACE_WINDOW):  # the slow batch leaves the window; the trend comes down
        batcher._learn_pace(0.01)
    assert batcher.seconds_per_item == pytest.approx(batcher.pace_trend)
    assert batcher.pace_trend < 0.011
    for i in range(PACE_WINDOW):  # every eighth batch three times slower
        batcher._learn_pace(0.03 if i % 8 == 7 else 0.01)
    assert batcher.seconds_per_item > 0.025 > batcher.pace_trend


def test_queued_jobs_are_judged_by_when_they_would_finish(
        parts: tuple[RewardFront, Engine]) -> None:
    """A job expires when it could no longer finish in time even started now (not only once
    its deadline has passed); and a batch leaves out a job that would finish late behind the
    jobs taken before it, or would make one of them late (a batch's jobs are answered when it
    ends), for the next free lane."""
    from service.batching import Job

    front, engine = parts

    async def scenario() -> tuple[int, ...]:
        batcher = Batcher(engine, "tiny", 64, 0, 100_000)
        batcher.seconds_per_item = 0.01
        loop = asyncio.get_running_loop()
        now = time.perf_counter()

        def job(count: int, deadline_s: float) -> Job:
            return Job(items(front, count), loop.create_future(), deadline=now + deadline_s)

        late, timely = job(100, 0.5), job(10, 0.5)  # they need 1 s and 0.1 s
        batcher.jobs.extend([late, timely])
        batcher._count(110)
        batcher._expire()
        expired = late.future.done(), timely.future.done()
        batcher.jobs.clear()
        # 0.1 s alone, 0.2 s behind the first: a deadline of 0.15 s fits only alone
        batcher.jobs.extend([job(10, 60), job(10, 0.15)])
        taken = [len(batcher._take())]
        batcher.jobs.clear()
        # the other way round: the second has time behind the first, but the first, answered
        # with it, would then be late
        batcher.jobs.extend([job(10, 0.15), job(10, 60)])
        taken.append(len(batcher._take()))
        batcher.jobs.clear()
        # and with time for both, both go
        batcher.jobs.extend([job(10, 0.3), job(10, 0.3)])
        taken.append(len(batcher._take()))
        return (*expired, *taken)

    assert asyncio.run(scenario()) == (True, False, 1, 1, 2)


def test_an_admitted_request_holds_its_place_until_its_items_are_queued(
        parts: tuple[RewardFront, Engine]) -> None:
    """Requests admitted together (each still tokenising) cannot overfill the queue: each holds
    its place from admission; one that fails before queueing gives it back."""
    front, engine = parts

    async def scenario() -> None:
        batcher = Batcher(engine, "tiny", max_batch_size=64, max_latency_ms=0,
                          max_queued_items=100_000, max_queue_wait_ms=2000)
        batcher.seconds_per_item = 0.01
        with batcher.reserve(150):  # an empty queue admits anything
            # (150 + 40) x 10 ms = 1.9 s: admitted; 20 more would be 2.1 s, counting the
            # places held
            with batcher.reserve(40), pytest.raises(ServiceError):
                batcher.admit(20)
            assert batcher.queued_items == 150  # the second request failed: place given back
            batcher.admit(20)
        assert batcher.queued_items == 0
        with batcher.reserve(2) as slot:  # a text that needs more windows than it held
            result = await slot.run(items(front, 5))
        assert len(result.outputs) == 5 and batcher.queued_items == 0
        with pytest.raises(RuntimeError):
            await slot.run(items(front, 1))
        batcher.seconds_per_item = 0.01  # the run above taught it the tiny engine's pace
        with batcher.reserve(150):  # 1.5 s ahead
            with pytest.raises(ServiceError), batcher.reserve(2) as slot:
                await slot.run(items(front, 60))  # (150 + 2 + 58) x 10 ms = 2.1 s
            assert batcher.queued_items == 150  # refused: its place given back

    asyncio.run(scenario())


def test_the_queue_plans_with_a_lanes_pace_not_a_lone_calls(
        parts: tuple[RewardFront, Engine], tiny_artifact: Path) -> None:
    """A batch that ran alone on every core (service/runtime.py's Calls) went faster than a
    lane can: the queue does not learn its pace from it, only from batches run on the lanes."""
    front, _ = parts
    settings = Settings(graph=Graph.fp32, lanes=2, threads=1, lone_call_threads=2)
    engine = Engine(tiny_artifact, settings, front.encoder.pad_id)

    async def scenario() -> tuple[float, float]:
        batcher = Batcher(engine, "tiny", 64, 0, 10_000, max_queue_wait_ms=60_000)
        before = batcher.seconds_per_item
        await batcher.run(items(front, 3))  # alone: on every core
        alone = batcher.seconds_per_item
        with engine.calls.call():  # another call in flight: this batch runs on a lane
            await batcher.run(items(front, 3))
        return before - alone, batcher.seconds_per_item - alone

    unchanged, learnt = asyncio.run(scenario())
    assert unchanged == 0 and learnt != 0


def test_the_queue_learns_a_lanes_pace_from_the_part_of_a_batch_run_on_a_lane(
        parts: tuple[RewardFront, Engine]) -> None:
    """Under load a lane's batch often has a few engine calls that ran alone on every core
    (the other lane between batches): the batch still teaches the pace, from the rest. Had
    such batches taught nothing, a storm's slower pace would go unlearnt for seconds."""
    front, engine = parts

    class PartlyLone:
        lanes = engine.lanes

        def call(self, batch: list, on_batch: object = None) -> tuple[np.ndarray, Lone]:
            time.sleep(0.2)  # four items: two on the lane in about 0.19 s, two alone in 0.01 s
            return np.zeros((len(batch), 1), dtype=np.float32), Lone(items=2, seconds=0.01)

    async def scenario() -> float:
        batcher = Batcher(cast(Engine, PartlyLone()), "stub", 64, 0, 10_000)
        await batcher.run(items(front, 4))
        return batcher.seconds_per_item

    pace = asyncio.run(scenario())
    assert 0.09 < pace < 0.12  # (0.2 - 0.01) / 2, not 0.2 / 4


def test_a_job_keeps_time_for_the_event_loops_waits_still_ahead_as_they_are_now(
        parts: tuple[RewardFront, Engine]) -> None:
    """A job admitted while the loop was idle kept no time for its lag; when the loop runs late
    by the time its batch would start, the waits still ahead (its result waking it, its answer
    going out) would make it late at the client, and it is answered 429 instead. A job admitted
    at that lag already kept the time."""
    from service.batching import WAITS_AFTER_ENGINE, Job
    from service.deadline import LOOP_LAG

    front, engine = parts

    async def scenario() -> tuple[bool, bool]:
        batcher = Batcher(engine, "tiny", 64, 0, 100_000)
        batcher.seconds_per_item = 0.01
        LOOP_LAG.start()
        LOOP_LAG.seconds = 0.3  # as under a storm's refusals
        loop = asyncio.get_running_loop()
        deadline = time.perf_counter() + 0.5  # 10 items take 0.1 s: time enough but for the lag
        idle, busy = (Job(items(front, 10), loop.create_future(), deadline, lag)
                      for lag in (0.0, 0.3))
        batcher.jobs.extend([idle, busy])
        batcher._count(20)
        batcher._expire()
        return idle.future.done(), busy.future.done()

    assert WAITS_AFTER_ENGINE * 0.3 > 0.5 - 0.1
    assert asyncio.run(scenario()) == (True, False)
