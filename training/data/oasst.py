"""Open-Assistant conversation trees: sibling assistant replies ranked by people.

Each line of the file is one tree. Wherever a message has two or more assistant replies with a
human `rank` (0 = best), every pair of them is a preference: the better-ranked reply is chosen,
and the conversation down to their parent is the prompt. Synthetic and deleted messages are
skipped (the data's README asks for it), and so is everything below them.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

from models.inputs import Message
from training.data.preference import group_key
from training.data.records import DataError, Loaded, PreferencePair, iter_jsonl

_ROLES = {"prompter": "user", "assistant": "assistant"}


def load_oasst(path: Path, loaded: Loaded) -> None:
    for where, tree in iter_jsonl(path, loaded):
        root = tree.get("prompt")
        try:
            if not isinstance(root, dict):
                raise DataError(path, where, "prompt", "must be a message object")
            if _usable(root):
                _walk(path, where, root, (), loaded, group_key(str(root.get("text", ""))))
        except DataError as exc:
            loaded.invalid(exc)


def _usable(message: dict[str, Any]) -> bool:
    return not message.get("synthetic") and not message.get("deleted")


def _walk(path: Path, where: str, message: dict[str, Any], history: tuple[Message, ...],
          loaded: Loaded, group: str) -> None:
    text, role = message.get("text"), message.get("role")
    if not isinstance(text, str) or not text.strip():
        raise DataError(path, where, "text", "a message's text is missing or empty")
    if role not in _ROLES:
        raise DataError(path, where, "role", f"must be prompter or assistant, not {role!r}")
    conversation = (*history, Message(_ROLES[role], text.strip()))  # type: ignore[arg-type]
    replies = [r for r in message.get("replies") or [] if isinstance(r, dict) and _usable(r)]
    if role == "prompter":
        ranked = sorted((r for r in replies if r.get("role") == "assistant"
                         and isinstance(r.get("rank"), int) and isinstance(r.get("text"), str)
                         and r["text"].strip()), key=lambda r: r["rank"])
        for better, worse in combinations(ranked, 2):
            if better["rank"] == worse["rank"]:
                loaded.skipped["tie"] += 1
                continue
            loaded.keep(PreferencePair(conversation, better["text"].strip(),
                                       worse["text"].strip(), 0.0, "oasst", group))
    for reply in replies:
        _walk(path, where, reply, conversation, loaded, group)
