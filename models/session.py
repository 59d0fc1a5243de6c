"""onnxruntime sessions over the artifact's graphs: open one, and score encoded items with it.

Shared by the export (parity and the int8 acceptance check) and the service, so both run the
graph the same way. onnxruntime is imported lazily: the training side can read manifests without
it, and a missing engine is reported with the extra that brings it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.inputs import EncodedPair, pad_batch

if TYPE_CHECKING:
    import onnxruntime

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "logits"


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError("onnxruntime is missing: install alignserve[serve] (CPU) or "
                          "alignserve[gpu] (CUDA), never both") from exc
    return onnxruntime


def open_session(path: Path, providers: Sequence[str] = ("CPUExecutionProvider",),
                 threads: int | None = None, cpu_arena: bool = True, spin: bool = True
                 ) -> onnxruntime.InferenceSession:
    """`spin`: whether idle intra-op threads spin for work (onnxruntime's default: faster
    hand-offs within a call, a core held busy for a while after it)."""
    ort = _ort()
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = cpu_arena
    if threads:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=list(providers))


def feeds(session: onnxruntime.InferenceSession, arrays: dict[str, np.ndarray]
          ) -> dict[str, np.ndarray]:
    """The padded arrays the graph reads: every one of INPUT_NAMES it declares (a model
    without segments, RoBERTa's or DeBERTa-v3's, has no token_type_ids input)."""
    return {i.name: arrays[i.name] for i in session.get_inputs()}


def token_budget_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices sorted by length, cut into batches whose padded size stays within max_tokens:
    padding is the main waste on a CPU, and sorting removes most of it."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        if current and lengths[index] * (len(current) + 1) > max_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


OnBatch = Callable[[int, int, float], None]  # (items, padded tokens, seconds)
# For each engine call, a context in which one session is the caller's (service/runtime.py's
# Calls: a lane's session, or every core's when the call is the only one in flight).
SessionFor = Callable[[], AbstractContextManager["onnxruntime.InferenceSession"]]


def run(session: onnxruntime.InferenceSession | SessionFor, items: Sequence[EncodedPair],
        max_tokens: int = 4096, pad_id: int = 0, on_batch: OnBatch | None = None
        ) -> np.ndarray:
    """Model outputs, shape (len(items), num_outputs), in the order of `items`.
    `session` is one session, or a SessionFor that gives each engine call its own; `on_batch`
    hears about every engine call (for metrics)."""
    if not items:
        raise ValueError("no items to score")
    session_for = session if callable(session) else lambda: nullcontext(session)
    outputs: np.ndarray | None = None
    for indices in token_budget_batches([len(item) for item in items], max_tokens):
        arrays = pad_batch([items[i] for i in indices], pad_id)
        started = time.perf_counter()
        with session_for() as chosen:
            (logits,) = chosen.run([OUTPUT_NAME], feeds(chosen, arrays))
        if on_batch is not None:
            on_batch(len(indices), arrays["input_ids"].size, time.perf_counter() - started)
        if outputs is None:
            outputs = np.zeros((len(items), logits.shape[1]), dtype=np.float32)
        outputs[indices] = logits
    assert outputs is not None
    return outputs
