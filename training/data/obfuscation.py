"""Obfuscated spellings: copies of training texts with words misspelt the way abuse is written
to slip past a filter.

People who want abuse to get through write "h a t e", "h4te", "haet" or "Ihate", and a
classifier that has only seen words spelt right reads those as new, harmless tokens (Gröndahl
et al. 2018, "All You Need is 'Love': Evading Hate Speech Detection": typos, removed and added
word boundaries broke every detector they tried). WordPiece splits a misspelt word into pieces
the model has rarely seen in abuse, so it must be shown such spellings to learn them. HateCheck's
spelling cases were the default model's weakest hateful ones (29% caught with added spaces, 29%
in leetspeak).

This builds such texts from the training sample itself, with no new labels: a copy of a text with
some of its words misspelt keeps the text's labels (a misspelling changes what a text looks like,
not what it says). The texts are drawn from the whole sample, clean and abusive alike, so a
misspelling is no cue for abuse in itself. Five kinds, each on a whole word:

- swap: two adjacent letters after the first exchanged ("hate" -> "haet");
- drop: an inner letter removed ("hatred" -> "hatrd");
- join: the space after the word removed ("I hate" -> "Ihate");
- spaces: a space between every letter ("hate" -> "h a t e");
- leet: letters written as look-alike digits and signs ("hate" -> "h4te").

Each word of at least `MIN_LETTERS` letters is misspelt with probability `WORD_RATE`, and at
least one is, so the word that carries the abuse is often among them.

Measured (bench/obfuscation.py; docs/measurements.md): at 10% of the texts its rule chose it
over seeds 0 and 1, and a third seed agreed; it is in the default preset (and, by the same rule
on seed 0, in the full one), but not for the reason it was built: HateCheck's spelling cases
moved within their seed spread (they are misspelt "I hate [group]", whose spelt-right form the
model rarely catches either) and the misspelt validation copy's hate AUPRC barely (+0.006 over
three seeds). What rose is validation AUPRC in general, most on sexual harassment, whose only
source (ConvAbuse) is small and trained on whole (the copies are more looks at it), though one
seed of three lost there; every test split's mean AUPRC rose over the three seeds.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import replace

from training.data.labelled import TextExample

NAME = "obfuscation"
KINDS = ("swap", "drop", "join", "spaces", "leet")
MIN_LETTERS = 3
WORD_RATE = 0.25
LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}
_WORD = re.compile(r"^([^A-Za-z]*)([A-Za-z]+)([^A-Za-z]*)$")


def _misspell(word: str, kind: str, rng: random.Random) -> str:
    """`word` (letters only, at least MIN_LETTERS) misspelt by `kind`; 'join' is the caller's."""
    if kind == "swap":
        places = [i for i in range(1, len(word) - 1) if word[i] != word[i + 1]]
        if not places:  # "aaa": nothing to exchange
            return _misspell(word, "drop", rng)
        i = rng.choice(places)
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "drop":
        i = rng.randrange(1, len(word) - 1)
        return word[:i] + word[i + 1:]
    if kind == "spaces":
        return " ".join(word)
    if kind == "leet":
        places = [i for i, c in enumerate(word) if c.lower() in LEET]
        if not places:  # no letter has a look-alike: misspell it another way
            return _misspell(word, "swap", rng)
        chosen = set(rng.sample(places, rng.randint(1, len(places))))
        return "".join(LEET[c.lower()] if i in chosen else c for i, c in enumerate(word))
    raise ValueError(f"unknown misspelling {kind!r}")


def obfuscate(text: str, rng: random.Random) -> str:
    """`text` with some of its words misspelt (at least one when it has a word of MIN_LETTERS
    letters or more; otherwise unchanged). Punctuation around a word stays where it was."""
    words = text.split()
    eligible = [i for i, w in enumerate(words)
                if (m := _WORD.match(w)) and len(m.group(2)) >= MIN_LETTERS]
    if not eligible:
        return text
    chosen = {i for i in eligible if rng.random() < WORD_RATE} or {rng.choice(eligible)}
    out: list[str] = []
    join_next = False  # the word before lost its space: this one goes on its end
    for i, word in enumerate(words):
        join_now = False
        if i in chosen:
            head, letters, tail = _WORD.match(word).groups()  # type: ignore[union-attr]
            kind = rng.choice(KINDS)
            if kind == "join" and i + 1 < len(words):
                join_now = True
            else:  # the last word has no space after it to lose: misspell it instead
                letters = _misspell(letters, "swap" if kind == "join" else kind, rng)
            word = head + letters + tail
        if join_next:
            out[-1] += word
        else:
            out.append(word)
        join_next = join_now
    return " ".join(out)


def obfuscated(sample: Sequence[TextExample], count: int, seed: int) -> list[TextExample]:
    """`count` misspelt copies of texts drawn from `sample` (each at most once while it lasts),
    with their labels."""
    if count <= 0 or not sample:
        return []
    rng = random.Random(f"{NAME}:{seed}")
    drawn = rng.sample(list(sample), min(count, len(sample)))
    return [replace(e, text=obfuscate(e.text, rng), group=NAME) for e in drawn]
