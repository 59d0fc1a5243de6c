"""The training loop shared by every task: one loop, the objective plugged in.

Repeatable and resumable: the batch plan is a pure function of the seed, and a checkpoint holds
model, optimizer, scheduler, the step, the torch RNG state (dropout) and the running weight
average, so `resume` continues an interrupted run to the same weights as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import random
import re
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from torch import nn
from tqdm.auto import tqdm

from training import distributed
from training.config import TrainConfig
from training.modeling import ScoringModel

Batch = dict[str, torch.Tensor]
# (model, batch) -> (loss, statistics such as accuracy) for one micro-batch
Objective = Callable[[ScoringModel, Batch], tuple[torch.Tensor, dict[str, float]]]
CHECKPOINT = "trainer_state.pt"
# Settings that say where a run computes, not what it computes: a run may resume elsewhere.
WHERE_SETTINGS = frozenset({"device", "threads"})


def plan_batches(lengths: Sequence[int], batch_size: int, epochs: float, seed: int,
                 pool: int = 50) -> list[list[int]]:
    """Micro-batches of item indices for the whole run. Items are shuffled, then sorted by length
    inside pools of `pool` batches so a batch holds similar lengths (little padding), then the
    batches are shuffled so lengths do not drift through an epoch."""
    if not lengths:
        raise ValueError("no training items")
    per_epoch = math.ceil(len(lengths) / batch_size)
    plan: list[list[int]] = []
    for epoch in range(math.ceil(epochs)):
        rng = random.Random(seed * 1_000_003 + epoch)
        order = list(range(len(lengths)))
        rng.shuffle(order)
        batches = []
        for start in range(0, len(order), batch_size * pool):
            chunk = sorted(order[start:start + batch_size * pool], key=lambda i: lengths[i])
            batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(batches)
        plan += batches
    return plan[:max(1, round(epochs * per_epoch))]


@dataclass
class StopRequest:
    requested: bool = False


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """SIGINT or SIGTERM asks the loop to finish its step, checkpoint and stop, so an
    interrupted run loses nothing; a second Ctrl-C aborts at once."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be installed from the main thread
        return

    def handle(signum: int, frame: object) -> None:
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.requested = True

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when torch sees a GPU, else the CPU (TrainConfig checked the name)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda was asked for, but torch sees no CUDA GPU")
    return torch.device(name)


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA (the weights and the optimizer stay fp32); a no-op on the CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _optimizer(model: ScoringModel, config: TrainConfig, extra: list[nn.Parameter]
               ) -> torch.optim.Optimizer:
    if config.freeze_embeddings:
        for parameter in model.encoder.get_input_embeddings().parameters():
            parameter.requires_grad_(False)
    depth = model.encoder.config.num_hidden_layers
    if config.freeze_layers > depth:
        raise ValueError(f"freeze_layers {config.freeze_layers}: the encoder has {depth} layers")
    rates: dict[tuple[float, bool], list[nn.Parameter]] = {}  # (lr, decayed?) -> parameters
    for name, parameter in model.encoder.named_parameters():
        layer = _layer(name, depth)
        if config.freeze_layers and layer < config.freeze_layers:  # the embeddings (-1) too
            parameter.requires_grad_(False)
        if parameter.requires_grad:
            rate = config.lr * config.layer_decay ** (depth - 1 - layer)
            rates.setdefault((rate, parameter.ndim >= 2), []).append(parameter)
    groups = [{"params": params, "lr": rate, "weight_decay": config.weight_decay if decay else 0.0}
              for (rate, decay), params in rates.items()]
    groups.append({"params": list(model.head.parameters()) + extra, "lr": config.head_lr,
                   "weight_decay": 0.0})
    return torch.optim.AdamW(groups)


def _layer(name: str, depth: int) -> int:
    """The transformer layer a parameter belongs to (`encoder.layer.3.…` in BERT, RoBERTa and
    DeBERTa); -1 for the embeddings below them; the top layer for what sits above (a pooler)."""
    if name.startswith("embeddings."):
        return -1
    found = re.search(r"(?:^|\.)layer\.(\d+)\.", name)
    return int(found.group(1)) if found else depth - 1


def _schedule(optimizer: torch.optim.Optimizer, total: int, warmup_ratio: float
              ) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, round(total * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class Trainer:
    model: ScoringModel
    plan: list[list[int]]
    collate: Callable[[list[int]], Batch]
    objective: Objective
    config: TrainConfig
    checkpoint_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.total_steps = math.ceil(len(self.plan) / self.config.grad_accum)
        self.rank, self.size, local_rank = distributed.world()
        self.device = resolve_device(self.config.device)
        if self.size > 1:
            if self.config.grad_accum % self.size:
                raise ValueError(f"--grad-accum {self.config.grad_accum} must be a multiple of "
                                 f"the {self.size} processes: each takes an equal share of "
                                 "every step's micro-batches")
            if self.device.type == "cuda":
                self.device = torch.device("cuda", local_rank)
            elif not self.config.threads:
                torch.set_num_threads(distributed.threads_per_process())
            distributed.setup(self.device)
        self.main = self.rank == 0
        self.model.to(self.device)
        # An objective with parameters of its own (the reward's length term) trains with them.
        # Kept apart from `objective`, which a caller may wrap, so checkpoints always hold it.
        self.objective_state = (self.objective if isinstance(self.objective, nn.Module)
                                else nn.Module())
        self.objective_state.to(self.device)
        extra = [p for p in self.objective_state.parameters() if p.requires_grad]
        self.optimizer = _optimizer(self.model, self.config, extra)
        self.scheduler = _schedule(self.optimizer, self.total_steps, self.config.warmup_ratio)
        self.step = 0
        # Weight averaging: the running mean of the weights after each step past this one.
        self.average_from = self.total_steps - round(self.total_steps * self.config.average_tail)
        self.average: dict[str, torch.Tensor] = {}

    def fit(self, resume: bool = False, stop_at: int | None = None) -> list[dict[str, float]]:
        """Train to the end of the plan, or until optimizer step `stop_at` (then checkpoint)."""
        torch.manual_seed(self.config.seed + self.rank)  # dropout: each process its own masks
        if resume:
            self._restore()
        self.model.train()
        end = min(self.total_steps, stop_at if stop_at is not None else self.total_steps)
        recent: deque[dict[str, float]] = deque(maxlen=50)
        with stop_on_signals() as stop, tqdm(total=self.total_steps, initial=self.step,
                                             unit="step", desc="train", dynamic_ncols=True,
                                             disable=not self.main) as bar:
            while self.step < end:
                record = self._optimizer_step()
                self._update_average()
                self.history.append(record)
                recent.append(record)
                bar.update(1)
                bar.set_postfix({k: f"{sum(r[k] for r in recent) / len(recent):.3f}"
                                 for k in ("loss", "accuracy")})
                if self.step % self.config.checkpoint_every == 0 or self.step == end:
                    self._save()
                # Every process stops at the same step (a signal may reach them apart).
                if distributed.sum_values({"stop": float(stop.requested)}, self.device)["stop"]:
                    self._save()
                    if self.main:
                        bar.write(f"interrupted: checkpoint saved at step {self.step}")
                    break
        if self.step == self.total_steps and self.average:
            self.model.load_state_dict(self.average, strict=False)
        self.model.eval()
        return self.history

    def _update_average(self) -> None:
        """Fold the weights after this step into the running mean of the averaged tail (floating
        tensors only: integer buffers such as position ids do not move)."""
        count = self.step - self.average_from
        if count <= 0:
            return
        with torch.no_grad():
            for name, value in self.model.state_dict().items():
                if not value.is_floating_point():
                    continue
                if count == 1:
                    self.average[name] = value.detach().clone()
                else:
                    self.average[name].add_(value - self.average[name], alpha=1 / count)

    def _optimizer_step(self) -> dict[str, float]:
        accum = self.config.grad_accum
        micro = self.plan[self.step * accum:(self.step + 1) * accum]
        totals: dict[str, float] = {}
        for indices in micro[self.rank::self.size]:  # this process's share of the step
            batch = {k: v.to(self.device) for k, v in self.collate(indices).items()}
            with autocast(self.device):
                loss, stats = self.objective(self.model, batch)
            (loss / len(micro)).backward()
            for key, value in {"loss": loss.item(), **stats}.items():
                totals[key] = totals.get(key, 0.0) + value / len(micro)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        distributed.sum_gradients(params)  # the whole step's gradient on every process
        totals = distributed.sum_values(totals, self.device)
        totals["grad_norm"] = float(nn.utils.clip_grad_norm_(params, self.config.max_grad_norm))
        # the encoder's top rate (its groups come before the head's, lowest layer first)
        totals["lr"] = float(max(self.scheduler.get_last_lr()[:-1]))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {"step": float(self.step), **totals}

    def _state(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "step": self.step,
            "model": self.model.state_dict(),
            "objective": self.objective_state.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "history": self.history,
            "average": self.average,
        }

    def _save(self) -> None:
        if self.main:  # the processes hold the same weights: one writes
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.checkpoint_dir / f"{CHECKPOINT}.tmp"
            torch.save(self._state(), tmp)
            os.replace(tmp, self.checkpoint_dir / CHECKPOINT)  # never half-written
        distributed.barrier()

    def _restore(self) -> None:
        path = self.checkpoint_dir / CHECKPOINT
        if not path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {path}")
        state = torch.load(path, weights_only=False, map_location=self.device)
        # A setting the checkpoint predates had its default then.
        defaults = TrainConfig().to_dict()
        changed = sorted(k for k, v in self.config.to_dict().items()
                         if k not in WHERE_SETTINGS and state["config"].get(k, defaults[k]) != v)
        if changed:
            raise ValueError(f"--resume: the checkpoint was made with other settings: {changed}")
        self.model.load_state_dict(state["model"])
        self.objective_state.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"].cpu())
        self.step, self.history = state["step"], state["history"]
        self.average = state.get("average", {})


class Batchable(Protocol):
    """Encoded training data: item lengths for the plan, and a padded batch for indices."""

    def lengths(self) -> list[int]: ...

    def collate(self, indices: list[int], pad_id: int = 0) -> Batch: ...


T = TypeVar("T")


def run_training(model: ScoringModel, data: Batchable, unit: str, objective: Objective,
          config: TrainConfig, output: Path, pad_id: int, resume: bool = False,
          stop_at: int | None = None) -> tuple[Trainer, list[dict[str, float]]] | None:
    """Plan, fit and checkpoint under `output`/checkpoints; None when stopped early (at
    `stop_at`, or by Ctrl-C or SIGTERM), with a checkpoint to --resume from."""
    trainer = Trainer(model, plan_batches(data.lengths(), config.batch_size, config.epochs,
                                          config.seed),
                      lambda idx: data.collate(idx, pad_id), objective, config,
                      output / "checkpoints")
    if trainer.main:
        print(f"training on {len(data.lengths())} {unit}, {trainer.total_steps} optimizer steps "
              f"of {config.batch_size * config.grad_accum} {unit}, max_length "
              f"{config.max_length}, on {trainer.device}")
    history = trainer.fit(resume=resume, stop_at=stop_at)
    distributed.finish()  # ranks other than 0 stop here; rank 0 goes on alone
    if trainer.step < trainer.total_steps:
        print(f"stopped at step {trainer.step} of {trainer.total_steps}; continue with --resume")
        return None
    return trainer, history
