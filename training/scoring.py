"""Batched inference for evaluation: sort by length, cap tokens per batch, keep input order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from models.inputs import EncodedPair, pad_batch
from models.session import token_budget_batches
from training.modeling import AnyModel, num_outputs
from training.trainer import autocast


def to_torch(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(array) for name, array in arrays.items()}


@torch.inference_mode()
def score(model: AnyModel, items: Sequence[EncodedPair], max_tokens: int = 4096,
          pad_id: int = 0, desc: str = "score") -> np.ndarray:
    """Model outputs, shape (len(items), num_outputs), in the order of `items`."""
    model.eval()
    device = next(model.parameters()).device
    out = np.zeros((len(items), num_outputs(model)), dtype=np.float32)
    batches = token_budget_batches([len(item) for item in items], max_tokens)
    with tqdm(total=len(items), unit="seq", desc=desc, dynamic_ncols=True, leave=False) as bar:
        for indices in batches:
            inputs = to_torch(pad_batch([items[i] for i in indices], pad_id))
            with autocast(device):
                outputs = model(**{k: v.to(device) for k, v in inputs.items()})
            out[indices] = outputs.float().cpu().numpy()
            bar.update(len(indices))
    return out
