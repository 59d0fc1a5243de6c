"""The moderation taxonomy: only what the labelled data here can honestly train.

The moderation sets cover hate and offensive language only (Davidson, TweetEval hate, TweetEval
offensive); nothing here labels sexual content, self-harm or violence, so the classifier does
not claim those. A source that says nothing about a category leaves it unknown, and the loss and
metrics mask it rather than reading silence as "no".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    name: str
    definition: str
    sources: tuple[str, ...]  # catalogued sets that label it


MODERATION: tuple[Category, ...] = (
    Category("hate", "Attacks or demeans people for a protected attribute (race, ethnicity, "
             "religion, gender, sexual orientation, disability, national origin).",
             ("davidson", "tweeteval-hate")),
    Category("offensive", "Insulting, profane or vulgar language, aimed at a group, a person "
             "or no one; hate speech counts as offensive too.",
             ("davidson", "tweeteval-offensive")),
)
CATEGORIES: tuple[str, ...] = tuple(c.name for c in MODERATION)
OUT_OF_SCOPE = "out_of_scope"  # the intent answer below the confidence threshold
