"""Label-free contrast pairs: preferences that need no annotator, built from real replies.

Each targets one cue a person uses and length cannot stand in for:
- relevance: the reply written for this prompt over a reply of similar length written for
  another conversation (the reward must read the prompt);
- truncation: the whole reply over the same reply cut off mid-sentence;
- dismissal: the reply over the same reply with a dismissive or insulting sentence spliced in
  (the rejected side is the longer one, which balances truncation's push towards length);
- repetition: the reply over the same reply with one of its sentences said again (longer,
  and worse: padding is not content);
- restatement: the reply over the same reply followed by the whole of it again behind a
  connecting phrase (padding at the scale of the reply, not of one sentence);
- courtesy: the reply in a courteous frame (an opening and a closing line) over the same reply
  in a brusque one of about the same length: tone with the content held fixed;
- substitution: the reply over the same reply with one fact swapped, a number (digits or a
  number word) or a name (a capitalised word inside a sentence) replaced by one of its kind
  from another reply: the pair has the same length and words but one, so only what the encoder
  knows of which names and numbers belong together can tell them apart;
- brush-off: the reply over a short reply that brushes the asker off and answers nothing
  ("Not my concern.", "Work it out on your own."): the rejected side is the shorter one, the
  mirror of dismissal, so that a reward freed from length does not learn that shorter is better;
- long brush-off: the reply over a run of those brush-offs about as long as the reply (at least
  as many words, at most one sentence more), so that the only difference left is that one
  answers and the other refuses to. Both brush-off kinds are off in every preset: they teach
  helpful over a brush-off, and cost hh-rlhf's harmless-base 3-6 points on the CPU default,
  whose preferred replies are often refusals (docs/measurements.md);
- decline: on a prompt written to provoke harm (RED_TEAM), a polite refusal over the reply
  people judged the more harmful of the two (the human pair's rejected side): declining a
  harmful request is not a non-answer. Other prompts give none (drawn on to the share). Off in
  every preset: alone it cost the brush-off pairs what it gave harmless-base, and with the long
  brush-offs the rule chose it on validation but its served seed fell on hh-rlhf test
  (docs/measurements.md).

On prompts written to provoke harm (RED_TEAM: hh-rlhf's harmless-base), declining is often the
reply people prefer, and a brush-off pair there sets whatever the chosen reply was, compliance
included, over a reply that declines. `brush_off_harmful` says what both brush-off kinds do on
those prompts: "reply" as on any other, "skip" none (drawn on elsewhere to the share), "refusal" a
polite refusal over the brush-off, so the pair teaches the tone of declining, not that
declining is worse.

The spliced sentences are this module's own; the behavioural suite (training/behaviour.py) uses
different wording, so the suite measures the cue, not the memorised sentences.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from functools import partial

from training.data.records import PreferencePair

KINDS = ("relevance", "truncation", "dismissal", "repetition", "restatement", "courtesy",
         "substitution", "brush_off", "long_brush_off", "decline")

DISMISSALS = (
    "Honestly, this is a pointless question.",
    "Figure the rest out yourself.",
    "I really can't be bothered with this.",
    "Stop wasting my time.",
    "That is a stupid thing to ask.",
    "Whatever, I don't care.",
    "Look it up yourself next time.",
    "You should already know this, it's obvious.",
    "Ugh, fine.",
    "Do your own homework.",
    "What a dumb idea.",
    "Don't bother me with this again.",
)
# Rude or indifferent, never a refusal: a polite "I can't help with that" is often the reply
# people prefer (hh-rlhf's harmless dialogues), and must not be taught as worse.
BRUSH_OFFS = (
    "Not sure why you're asking me.",
    "That's not my job.",
    "No clue, try somewhere else.",
    "Do I look like I care?",
    "Nope. Go away.",
    "Not my concern.",
    "Work it out on your own.",
    "Meh. Who knows.",
    "Find somebody who cares.",
    "Too busy for this.",
    "Search the internet like everyone else.",
    "Can't be bothered.",
)
# Prompts written to provoke harm: hh-rlhf's red-team dialogues.
RED_TEAM = frozenset({"hh-rlhf/harmless-base"})
# Polite refusals for brush-off pairs on those prompts; not the behavioural suite's wording.
REFUSALS = (
    "I'm sorry, but I'm not able to help with that.",
    "I'd rather not help with this one, sorry.",
    "I can't do that, but I'm glad to help with something else.",
    "Sorry, that's not something I can help you with.",
    "I'm not comfortable helping with that. Is there anything else I can do for you?",
    "I have to decline this request, I'm afraid.",
)
HARMFUL_MODES = ("reply", "skip", "refusal")  # what brush-off pairs do on RED_TEAM prompts


RESTATEMENTS = (
    "In other words,",
    "Again:",
    "As I mentioned,",
    "Let me say that once more:",
    "Put another way,",
    "Just to be clear,",
)
# (opening, closing): courteous and brusque frames of about the same length.
COURTEOUS = (
    ("Thanks for reaching out.", "Hope this helps!"),
    ("Sure, I can help with that.", "Take care."),
    ("Glad you asked.", "Good luck with it!"),
    ("Absolutely.", "Just ask if you need more."),
    ("Great question.", "Have a nice day!"),
)
BRUSQUE = (
    ("As I already said.", "End of story."),
    ("Ugh, this again.", "Don't ask me twice."),
    ("Whatever, fine.", "Nothing more to say."),
    ("Sigh. Listen.", "Figure out the rest yourself."),
    ("Look, honestly.", "We're done here."),
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
NUMBER_WORDS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "twenty", "hundred", "thousand", "million")
# A word that can be swapped: digits, a number word, or a capitalised word that does not open a
# sentence (a name, a place, a month...). Group 1 is what precedes it.
_FACT = re.compile(r"(^|[.!?:\"]\s*|\s)(\d+(?:[.,]\d+)?|[A-Z][a-z]{2,}|"
                   + "|".join(NUMBER_WORDS) + r")\b(?!')")
_NOT_NAMES = frozenset({"The", "This", "That", "These", "Those", "There", "Then", "They", "What",
                        "When", "Where", "Which", "While", "You", "Your", "Yes", "And", "But",
                        "For", "Here", "How", "Why", "Who", "Its", "Also", "However",
                        "Human", "Assistant", "Please", "Thanks", "Thank", "Hello", "Sorry",
                        "Sure", "Well", "Okay", "Some", "Many", "Most", "Not", "Now", "Our",
                        "She", "His", "Her", "Their", "One", "All", "Any", "Can", "Let", "Just",
                        "Instead", "Because", "Since", "Although", "See", "Great", "Good"})
MIN_WORDS = 12  # shorter replies cannot be cut in a way that reads as cut


def relevance(pairs: Sequence[PreferencePair], rng: random.Random) -> list[PreferencePair]:
    """Each chosen reply against the chosen reply of a neighbour in length from another group:
    sorting by length and pairing with an adjacent item keeps the two lengths close."""
    order = sorted(range(len(pairs)), key=lambda i: (len(pairs[i].chosen), rng.random()))
    out = []
    for rank, i in enumerate(order):
        for step in (1, -1, 2, -2, 3, -3):
            j = order[rank + step] if 0 <= rank + step < len(order) else None
            if j is not None and pairs[j].group != pairs[i].group:
                out.append(_contrast(pairs[i], pairs[j].chosen, "relevance"))
                break
    return out


def truncation(pairs: Sequence[PreferencePair], rng: random.Random) -> list[PreferencePair]:
    out = []
    for pair in pairs:
        words = pair.chosen.split()
        if len(words) >= MIN_WORDS:
            cut = rng.randint(len(words) * 3 // 10, len(words) * 7 // 10)
            out.append(_contrast(pair, " ".join(words[:cut]).rstrip(".!?,;:"), "truncation"))
    return out


def dismissal(pairs: Sequence[PreferencePair], rng: random.Random) -> list[PreferencePair]:
    out = []
    for pair in pairs:
        sentences = _SENTENCE_END.split(pair.chosen.strip())
        at = rng.randint(0, len(sentences))
        spliced = [*sentences[:at], rng.choice(DISMISSALS), *sentences[at:]]
        out.append(_contrast(pair, " ".join(spliced), "dismissal"))
    return out


def repetition(pairs: Sequence[PreferencePair], rng: random.Random) -> list[PreferencePair]:
    """One sentence repeated right after itself, or, for a one-sentence reply, the whole
    reply said twice."""
    out = []
    for pair in pairs:
        sentences = _SENTENCE_END.split(pair.chosen.strip())
        at = rng.randrange(len(sentences))
        padded = [*sentences[:at + 1], sentences[at], *sentences[at + 1:]]
        out.append(_contrast(pair, " ".join(padded), "repetition"))
    return out


def restatement(pairs: Sequence[PreferencePair], rng: random.Random) -> list[PreferencePair]:
    out = []
    for pair in pairs:
        reply = pair.chosen.strip()
        again = f"{reply[0].lower()}{reply[1:]}" if reply else reply
        out.append(_contrast(pair, f"{reply} {rng.choice(RESTATEMENTS)} {again}", "restatement"))
    return out


def courtesy(pairs: Sequence[PreferencePair], rng: random.Random) -> list[PreferencePair]:
    """Both sides are rebuilt around the reply, so the chosen side is not the real reply."""
    out = []
    for pair in pairs:
        reply = pair.chosen.strip()
        (open_c, close_c), (open_b, close_b) = rng.choice(COURTEOUS), rng.choice(BRUSQUE)
        out.append(PreferencePair(pair.prompt, f"{open_c} {reply} {close_c}",
                                  f"{open_b} {reply} {close_b}", 0.0, "contrast/courtesy",
                                  pair.group))
    return out


def _facts(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of every swappable word: 'number' (digits), 'number word' or 'name';
    a capitalised word right after the start or a sentence end is a sentence opener, not a
    name."""
    out = []
    for m in _FACT.finditer(text):
        word, before = m.group(2), m.group(1)
        if word in NUMBER_WORDS:
            out.append((m.start(2), m.end(2), "number word"))
        elif word[0].isdigit():
            if before == " " or text[m.end(2):m.end(2) + 1] not in (".", ")"):
                out.append((m.start(2), m.end(2), "number"))  # not a list's "1." or "2)"
        elif before == " " and word not in _NOT_NAMES:
            out.append((m.start(2), m.end(2), "name"))
    return out


def substitution(pairs: Sequence[PreferencePair], rng: random.Random) -> list[PreferencePair]:
    """One number or name in the reply replaced by another of its kind, drawn from the other
    replies of the sample (never the same word); replies with neither are skipped."""
    found = [(pair, _facts(pair.chosen)) for pair in pairs]
    pools: dict[str, list[str]] = {"number": [], "name": [], "number word": list(NUMBER_WORDS)}
    for pair, facts in found:
        for start, end, kind in facts:
            if kind != "number word":
                pools[kind].append(pair.chosen[start:end])
    out = []
    for pair, facts in found:
        if not facts:
            continue
        start, end, kind = rng.choice(facts)
        word = pair.chosen[start:end]
        others = [w for w in pools[kind] if w != word]
        if not others:
            continue
        out.append(_contrast(pair, pair.chosen[:start] + rng.choice(others) + pair.chosen[end:],
                             "substitution"))
    return out


def brush_off(pairs: Sequence[PreferencePair], rng: random.Random, harmful: str = "reply"
              ) -> list[PreferencePair]:
    """The reply over a brush-off; on RED_TEAM prompts as `harmful` says (HARMFUL_MODES)."""
    out = []
    for pair in pairs:
        made = _contrast(pair, rng.choice(BRUSH_OFFS), "brush_off")
        if pair.subset not in RED_TEAM or harmful == "reply":
            out.append(made)
        elif harmful == "refusal":
            out.append(replace(made, chosen=rng.choice(REFUSALS)))
    return out


def long_brush_off(pairs: Sequence[PreferencePair], rng: random.Random, harmful: str = "reply"
                   ) -> list[PreferencePair]:
    """Brush-offs in a random order, strung together until they have as many words as the
    reply; a reply longer than all of them together is skipped (`contrast_pairs` draws on). On
    RED_TEAM prompts as `harmful` says: with 'refusal', as many words as a polite refusal."""
    out = []
    for pair in pairs:
        if pair.subset in RED_TEAM and harmful != "reply":
            if harmful == "skip":
                continue
            pair = replace(pair, chosen=rng.choice(REFUSALS))
        wanted, said, words = len(pair.chosen.split()), [], 0
        for sentence in rng.sample(BRUSH_OFFS, len(BRUSH_OFFS)):
            if words >= wanted:
                break
            said.append(sentence)
            words += len(sentence.split())
        if words >= wanted:
            out.append(_contrast(pair, " ".join(said), "long_brush_off"))
    return out


def decline(pairs: Sequence[PreferencePair], rng: random.Random) -> list[PreferencePair]:
    return [replace(_contrast(pair, pair.rejected, "decline"), chosen=rng.choice(REFUSALS))
            for pair in pairs if pair.subset in RED_TEAM]


Generator = Callable[[Sequence[PreferencePair], random.Random], list[PreferencePair]]
GENERATORS: dict[str, Generator] = {
    "relevance": relevance, "truncation": truncation, "dismissal": dismissal,
    "repetition": repetition, "restatement": restatement, "courtesy": courtesy,
    "substitution": substitution, "brush_off": brush_off, "long_brush_off": long_brush_off,
    "decline": decline}
# Kinds whose generator skips the replies it cannot use by design: their share is reached by
# drawing on through the sample, as for pairs read whole. (Truncation skips replies too short to
# cut, about a fifth, and has always been left under its share: drawing on would change the
# default's training pairs.)
DRAWN_ON = frozenset({"long_brush_off", "decline"})


Whole = Callable[[Sequence[PreferencePair]], list[bool]]


def check_harmful(mode: str) -> None:
    """Refuses a `brush_off_harmful` that is not one of HARMFUL_MODES."""
    if mode not in HARMFUL_MODES:
        raise ValueError(f"brush_off_harmful is one of {', '.join(HARMFUL_MODES)}, not {mode!r}")


def contrast_pairs(pairs: Sequence[PreferencePair], shares: dict[str, float], seed: int,
                   whole: Whole | None = None, whole_kinds: Collection[str] = (),
                   brush_off_harmful: str = "reply") -> list[PreferencePair]:
    """For each kind, about `share` times len(pairs) contrast pairs, built from a sample of the
    real training pairs (drawn with the seed).

    `whole` says which contrast pairs the model would see whole, both sides untruncated; for the
    kinds in `whole_kinds`, only those are kept (the sample is drawn on until the share is
    reached or the pairs run out). A reply longer than the model's window loses what the
    contrast is about: the cut-off tail of a "whole" reply reads as truncated, a restatement is
    cut mid-way (so it is learnt as truncation, not repetition), a swapped fact or a spliced
    insult past the window leaves two identical inputs. At 128 tokens that was a quarter to a
    half of every kind. The kinds in DRAWN_ON are drawn on in the same way, past the replies
    their generator skips, and so are brush-offs when `brush_off_harmful` skips RED_TEAM
    prompts."""
    check_harmful(brush_off_harmful)
    generators: dict[str, Generator] = {
        **GENERATORS, "brush_off": partial(brush_off, harmful=brush_off_harmful),
        "long_brush_off": partial(long_brush_off, harmful=brush_off_harmful)}
    drawn_on = DRAWN_ON | ({"brush_off"} if brush_off_harmful == "skip" else set())
    out: list[PreferencePair] = []
    for kind, share in shares.items():
        wanted = min(len(pairs), round(share * len(pairs)))
        if wanted <= 0:
            continue
        rng = random.Random(f"{seed}:{kind}")
        keep = whole if kind in whole_kinds else None
        if keep is None and kind not in drawn_on:
            out += generators[kind](rng.sample(list(pairs), wanted), rng)
            continue
        order, made = rng.sample(list(pairs), len(pairs)), []
        for start in range(0, len(order), wanted):
            built = generators[kind](order[start:start + wanted], rng)
            if keep is not None:
                built = [pair for pair, seen in zip(built, keep(built), strict=True) if seen]
            made += built
            if len(made) >= wanted:
                break
        out += made[:wanted]
    return out


def _contrast(pair: PreferencePair, rejected: str, kind: str) -> PreferencePair:
    return PreferencePair(pair.prompt, pair.chosen, rejected, 0.0, f"contrast/{kind}",
                          pair.group)
