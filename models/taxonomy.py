"""The moderation taxonomy: only what the labelled data here can honestly train.

Hate and offensive language come from Davidson and TweetEval; sexism from EDOS; harassment,
sexual harassment and sexism aimed at conversational agents from ConvAbuse. Nothing here labels
sexual content in general, self-harm or graphic violence, so the classifier does not claim
those. Nor threats: EDOS's 443 "threats, plans to harm and incitement" (sexist ones only) were
tried as a `threat` category and could not carry it (test AUPRC 0.11; at its best-F1 threshold
it flagged 49% of XSTest's safe prompts), so it is left out (README, "Train the
classifiers"). A source that says nothing about a category leaves it unknown, and the loss and
metrics mask it rather than reading silence as "no" (training/data/labelled.py states each
source's rule). Clean requests (training/data/clean_requests.py) are 0 on every category.
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
    Category("harassment", "Abuse aimed at a person or at the assistant itself: insults, "
             "demeaning or hostile messages addressed to the one who reads them.",
             ("convabuse",)),
    Category("sexual_harassment", "Unwanted sexual remarks, advances or demands addressed to "
             "a person or to the assistant.", ("convabuse",)),
    Category("sexism", "Abuse or prejudice aimed at people because of their sex or gender "
             "(mostly against women in the sources).", ("edos", "convabuse")),
)
CATEGORIES: tuple[str, ...] = tuple(c.name for c in MODERATION)
OUT_OF_SCOPE = "out_of_scope"  # the intent answer below the confidence threshold
