"""Counter-speech: hateful or sexist training texts quoted inside a rebuke, labelled not hate.

People quote abuse to condemn it, to report it, or to deny it, and a classifier that has only
seen abuse on its own flags the rebuke too (HateCheck: 13% of counter-speech quoting hate
judged right, 8% of negated hate). This builds such texts from the training split's own
abusive texts, with no new labels: the quoted text inside a frame that rejects it.

Rule: a frame around a text labelled hate or sexism is labelled 0 on hate and on sexism;
offensive, harassment and sexual harassment stay unknown (a quoted slur is still a slur to
some readers, and the sources disagree on it), so the loss ignores them. Only texts of at most
`MAX_WORDS` words are quoted, so the frame and the quote fit the model's window together. The
frames are this module's own wording, not HateCheck's templates; HateCheck stays a test.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from training.data.labelled import TextExample

NAME = "counter-speech"
MAX_WORDS = 30
QUOTED = ("hate", "sexism")  # a frame is labelled 0 on these; the rest are unknown

# "{q}" is the quoted text as written; "{claim}" the same with its first letter lower-cased,
# for frames that deny it inside a sentence.
FRAMES = (
    'Someone posted "{q}" and I reported it. Nobody deserves to be talked about like that.',
    '"{q}" - this is exactly the kind of bigotry we should call out, not share.',
    'I can\'t believe people still write things like "{q}". It is hateful and it is wrong.',
    'Please stop posting stuff like "{q}". Words like that hurt real people.',
    'My uncle said "{q}" at dinner and I told him that was disgusting.',
    'Screenshot of what got sent to me today: "{q}". This is not okay and it has to stop.',
    'Whoever wrote "{q}" should be ashamed. I stand with the people it targets.',
    'It is not true that {claim} Anyone who believes that is spreading prejudice.',
    'I would never say that {claim} and I will keep speaking up when others do.',
    'Saying "{q}" is not an opinion, it is abuse. Be better than this.',
)
_HANDLE = re.compile(r"^(RT\s+)?(@\w+:?\s*)+|&#\d+;|&amp;|https?://\S+")


def quotable(text: str) -> str | None:
    """The text without retweet markers, leading handles, entities and links; None when too
    long or too short to quote."""
    cleaned = " ".join(_HANDLE.sub(" ", text).split()).strip(' "')
    words = cleaned.split()
    return cleaned if 3 <= len(words) <= MAX_WORDS else None


def counter_speech(train: Sequence[TextExample], count: int, seed: int) -> list[TextExample]:
    """`count` framed texts (fewer when the training texts hold fewer abusive ones), each
    quoting a different hateful or sexist training text, frames taken in turn."""
    if count <= 0:
        return []
    rng = random.Random(f"{NAME}:{seed}")
    quotes = [q for e in train if any(e.labels.get(c) == 1 for c in QUOTED)
              for q in [quotable(e.text)] if q]
    out = []
    for i, quote in enumerate(rng.sample(quotes, min(count, len(quotes)))):
        frame = FRAMES[i % len(FRAMES)]
        claim = quote[0].lower() + quote[1:]
        if not claim.endswith((".", "!", "?")):
            claim += "."
        out.append(TextExample(frame.format(q=quote, claim=claim),
                               labels=dict.fromkeys(QUOTED, 0), group=NAME))
    return out
