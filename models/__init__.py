"""The contract shared by training and serving: manifest schema and input format.

Imported from both sides, so it must never import torch.
"""

from models.inputs import EncodedPair, Message, PairEncoder, pad_batch, render_prompt
from models.manifest import InputFormat, Manifest, Task

__all__ = [
    "EncodedPair",
    "InputFormat",
    "Manifest",
    "Message",
    "PairEncoder",
    "Task",
    "pad_batch",
    "render_prompt",
]
