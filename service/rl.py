"""Reward for RL trainers: what a trainer sends, turned into (prompt, response) pairs.

OpenRLHF's remote reward model (`--remote_rm_url`) posts
`{"query": [...], "prompts": [...], "labels": [...]}`: each query is the whole sequence the
policy saw and wrote, decoded with its special tokens (chat template, end-of-turn and
end-of-sequence tokens included), and `prompts` holds the prompt part of each, as the dataset
rendered it. It reads `rewards` (one float per query) and, in versions with dynamic filtering,
`scores`.

`split_query` cuts each query where its prompt ends, strips the policy's end-of-sequence and
padding tokens from the response, and parses the prompt's chat template (ChatML, Llama 3,
Llama 2 / Mistral `[INST]`, or none) back into turns, so the reward model reads the
conversation as it was trained to: `Human: ...` / `Assistant: ...` lines, the response apart.
"""

from __future__ import annotations

import re

from models.inputs import Message, Prompt

# Tokens a policy's decoded output ends with (end of turn, end of sequence, padding).
_TRAILING = re.compile(
    r"(?:\s*(?:<\|im_end\|>|<\|eot_id\|>|<\|end_of_text\|>|<\|endoftext\|>|</s>|<eos>|"
    r"<end_of_turn>|<\|end\|>|<\|pad\|>|<pad>|\[PAD\]|<\|finetune_right_pad_id\|>))+\s*$")
_LEADING = re.compile(r"^(?:\s*(?:<\|begin_of_text\|>|<s>|<bos>|<\|endoftext\|>|<pad>|"
                      r"<\|pad\|>|\[PAD\]|\[CLS\]))+")
_CHATML = re.compile(r"<\|im_start\|>(system|user|assistant)[^\n]*\n(.*?)(?=<\|im_end\|>|"
                     r"<\|im_start\|>|$)", re.DOTALL)
_LLAMA3 = re.compile(r"<\|start_header_id\|>(system|user|assistant)<\|end_header_id\|>\s*"
                     r"(.*?)(?=<\|eot_id\|>|<\|start_header_id\|>|$)", re.DOTALL)
_INST = re.compile(r"\[INST\](.*?)\[/INST\](.*?)(?=\[INST\]|$)", re.DOTALL)
_LLAMA2_SYSTEM = re.compile(r"<<SYS>>(.*?)<</SYS>>", re.DOTALL)
_OTHER_SPECIAL = re.compile(r"<\|[a-z_]+\|>|</?s>|<bos>|<eos>")


class SplitError(ValueError):
    pass


def split_query(query: str, prompt: str | None) -> tuple[Prompt, str]:
    """(the prompt as turns, the response) of one trainer query. The prompt is located inside
    the query (it may follow padding or a BOS token); without one, the query is cut after its
    last assistant header."""
    if prompt is not None and prompt.strip():
        at = query.find(prompt)
        cut = at + len(prompt) if at >= 0 else -1
        if cut < 0 and (at := query.find(prompt.strip())) >= 0:
            cut = at + len(prompt.strip())
        if cut < 0:
            raise SplitError("its prompt does not occur in its query (was the query decoded "
                             "from the same tokens as the prompt?)")
        return turns(prompt), clean_response(query[cut:])
    header = _last_assistant_header(query)
    if header is None:
        raise SplitError("no prompt was sent and the query has no chat template to find the "
                         "response by: send 'prompts' (OpenRLHF does since 0.5)")
    return turns(query[:header]), clean_response(query[header:])


def clean_response(text: str) -> str:
    return _TRAILING.sub("", text).strip()


def turns(prompt: str) -> Prompt:
    """A rendered prompt back into chat turns; plain text (no template) is one user turn."""
    body = _LEADING.sub("", prompt)
    for pattern in (_CHATML, _LLAMA3):
        found = [Message(role, text.strip()) for role, text in pattern.findall(body)]
        if found:
            return _kept(found)
    if "[INST]" in body:
        out: list[Message] = []
        for user, assistant in _INST.findall(body):
            system = _LLAMA2_SYSTEM.search(user)
            if system:
                out.append(Message("system", system.group(1).strip()))
                user = _LLAMA2_SYSTEM.sub("", user)
            out += [Message("user", _strip_special(user)),
                    Message("assistant", _strip_special(assistant))]
        return _kept(out)
    return _strip_special(body)


def _kept(messages: list[Message]) -> Prompt:
    """The turns with content (a generation header alone has none); "" when none has."""
    kept = [m for m in messages if m.content]
    return kept if kept else ""


def _strip_special(text: str) -> str:
    return _OTHER_SPECIAL.sub("", text).strip()


def _last_assistant_header(query: str) -> int | None:
    ends = [m.end() for pattern in (r"<\|im_start\|>assistant[^\n]*\n",
                                    r"<\|start_header_id\|>assistant<\|end_header_id\|>\s*",
                                    r"\[/INST\]")
            for m in re.finditer(pattern, query)]
    return max(ends) if ends else None
