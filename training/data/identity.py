"""Identity balance: a mention of a group must not be a cue for hate in the training mix.

In the pooled moderation training texts a text that names a group (women, Muslims,
immigrants, gay people...) is labelled hate about three times as often as one that names none
(30% against 10%), so a classifier learns the name as a cue: on the validation split the
default model flagged 33% of the clean texts that name a group as hate, against 4% of those
that name none. That is the unintended bias of Dixon et al. (2018, "Measuring and Mitigating
Unintended Bias in Text Classification"), and this is its remedy in the instance-weighting form
of Zhang et al. (2020, "Demographics Should Not Be the Reason of Toxicity"): weight the clean
texts that name a group up until the hate rate among texts that name one equals the rate among
texts that name none, so the mention carries no information about the label.

Here the weights are copies, at a fixed number of texts: after the usual sample, clean texts
that name a group (hate known to be 0; first those not yet sampled, then copies) replace the
moderation sources' clean texts that name none, until the two hate rates match. Positives are
never touched, the compute is unchanged, and the labels are the sources' own. `TERMS` names
groups in general (gender, sexuality, race and ethnicity, religion, migration, disability), not
any test suite's list.

Measured over two seeds (`python -m bench.identity_balance`) it halved that bias but cost 0.024
validation hate AUPRC and hateful recall with it, so it is off by default (`--identity-balance`;
docs/measurements.md, "Naming a group").

The same remedy serves any surface cue (`Cue`). The second is a word of violence (`VIOLENCE`,
`--violence-balance`): in the default's training sample (seed 0) a text with one is labelled
hate 31% of the time against 13% for the rest, and on HateCheck the default flags 66% of the
181 non-hateful cases with one ("No woman ought to be executed.", "Threatening to kill all women
will get you thrown in jail.", "She should be killed.") against 18% of those without: 119 of
its 300 false flags. Hate is an attack on people for who they are, violent or not; violence
at no group is not hate. Measured over two seeds by the same rule (`python -m
bench.identity_balance --cue violence`), it raised validation hate AUPRC (0.586 -> 0.622) and
is on in the default preset since 2026-12-07 (docs/measurements.md, "The violence balance").
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from training.data.labelled import TextExample

CATEGORY = "hate"
TERMS = re.compile(
    r"\b(wom[ae]n|girls?|females?|lad(?:y|ies)|gays?|lesbians?|bisexuals?|homosexuals?|queers?"
    r"|lgbt\w*|trans|transgender\w*|transsexuals?|blacks?|whites|africans?|asians?|chinese"
    r"|indians?|mexicans?|hispanics?|latin[oax]s?|arabs?|jews?|jewish|muslims?|islam\w*"
    r"|christians?|catholics?|hindus?|buddhists?|sikhs?|atheists?|immigra\w*|migrants?"
    r"|refugees?|foreigners?|asylum|disabled|disabilit\w*|blind|deaf|autis\w*|wheelchairs?)\b",
    re.IGNORECASE)


# Words of violence in general (harm done to a body, and the plain words for wanting it), not
# any test suite's list.
VIOLENT = re.compile(
    r"\b(kill\w*|murder\w*|rap(?:e|ed|es|ing|ist|ists)|execut(?:e|ed|es|ing|ion)|shoot\w*|shot"
    r"|stab\w*|die|dies|dead|death|hang(?:ed|ing)?|lynch\w*|burn(?:ed|ing|s)?|beat(?:en|ing)?"
    r"|hurt\w*|harm(?:ed|ing|s)?|suffer\w*|slaughter\w*|exterminat\w*|genocide|bomb\w*"
    r"|tortur\w*|strangl\w*|behead\w*)\b",
    re.IGNORECASE)


@dataclass(frozen=True)
class Cue:
    """A surface feature that must not be a cue for hate: the texts that have it, the flag and
    training-mix group of the texts a balance swaps in, and the report's words for texts with
    and without it."""
    name: str
    pattern: re.Pattern[str]
    has: str
    lacks: str

    def found(self, text: str) -> bool:
        return self.pattern.search(text) is not None

    @property
    def mix_key(self) -> str:
        """Where a run's report.json keeps the balance's record (`training_mix.<key>`)."""
        return self.name.replace("-", "_")


IDENTITY = Cue("identity-balance", TERMS, "naming_a_group", "naming_none")
VIOLENCE = Cue("violence-balance", VIOLENT, "with_violence", "without_violence")
# Each moderation report's entries of hate flag rates with and without a cue (`{set}/identity`)
CUES = {"identity": IDENTITY, "violence": VIOLENCE}


def names_a_group(text: str) -> bool:
    return IDENTITY.found(text)


@dataclass(frozen=True)
class Balance:
    """Hate rates among the hate-labelled texts with the cue and without it, before and after,
    and how many texts were swapped in (`copies` of them repeats)."""
    cue: Cue
    with_before: float
    with_after: float
    without: float
    swapped: int
    copies: int

    def record(self) -> dict[str, float | int]:
        return {f"hate_rate_{self.cue.has}_before": round(self.with_before, 4),
                f"hate_rate_{self.cue.has}_after": round(self.with_after, 4),
                f"hate_rate_{self.cue.lacks}": round(self.without, 4),
                "swapped_in": self.swapped, "copies": self.copies}


def _counts(texts: Sequence[TextExample], cue: Cue = IDENTITY) -> tuple[int, int, int, int]:
    """(hate with the cue, clean with it, hate without, clean without)."""
    counts = [0, 0, 0, 0]
    for e in texts:
        label = e.labels.get(CATEGORY)
        if label in (0, 1):
            counts[(0 if cue.found(e.text) else 2) + (1 - label)] += 1
    return counts[0], counts[1], counts[2], counts[3]


def _rate(hate: int, clean: int) -> float:
    return hate / (hate + clean) if hate + clean else 0.0


def balance_cue(sample: list[TextExample], pool: Sequence[TextExample], seed: int,
                cue: Cue = IDENTITY) -> tuple[list[TextExample], Balance]:
    """`sample` with clean texts that have the cue (naming a group) swapped in for clean texts
    without it, drawn from `pool` (the texts the sample was drawn from), until the cue carries
    no more hate than its absence; the same number of texts."""
    hate_with, clean_with, hate_without, clean_without = _counts(sample, cue)
    # Only the moderation sources' own texts make room; texts that carry a group (the clean
    # requests' origins, texts an earlier balance swapped in: registers the model must keep
    # seeing) stay.
    replaceable = [e for e in sample if e.labels.get(CATEGORY) == 0 and not e.group
                   and not cue.found(e.text)]
    others = _rate(hate_without, clean_without)
    before = _rate(hate_with, clean_with)
    if not 0 < others < before:
        return sample, Balance(cue, before, before, others, 0, 0)
    # s swapped texts make the rates equal, the others' rising as their clean texts leave:
    # h_w / (h_w + c_w + s) = h_o / (h_o + c_o - s)  =>  s = (h_w c_o - h_o c_w) / (h_w + h_o)
    wanted = (hate_with * clean_without - hate_without * clean_with) / (hate_with + hate_without)
    swap = min(round(wanted), len(replaceable))
    rng = random.Random(f"{cue.name}:{seed}")
    sampled = {id(e) for e in sample}
    candidates = [e for e in pool if e.labels.get(CATEGORY) == 0 and cue.found(e.text)]
    unused = [e for e in candidates if id(e) not in sampled]
    rng.shuffle(unused)
    added = unused[:swap]
    copies = swap - len(added)
    added += [rng.choice(candidates) for _ in range(copies)] if candidates else []
    leaving = {id(e) for e in rng.sample(replaceable, len(added))}
    kept = [e for e in sample if id(e) not in leaving]
    out = kept + [replace(e, group=cue.name) for e in added]
    # every text in was clean and had the cue, every text out clean and had it not
    moved = len(added)
    return out, Balance(cue, before, _rate(hate_with, clean_with + moved),
                        _rate(hate_without, clean_without - moved), moved, copies)
