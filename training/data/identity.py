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
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from training.data.labelled import TextExample

NAME = "identity-balance"
CATEGORY = "hate"
TERMS = re.compile(
    r"\b(wom[ae]n|girls?|females?|lad(?:y|ies)|gays?|lesbians?|bisexuals?|homosexuals?|queers?"
    r"|lgbt\w*|trans|transgender\w*|transsexuals?|blacks?|whites|africans?|asians?|chinese"
    r"|indians?|mexicans?|hispanics?|latin[oax]s?|arabs?|jews?|jewish|muslims?|islam\w*"
    r"|christians?|catholics?|hindus?|buddhists?|sikhs?|atheists?|immigra\w*|migrants?"
    r"|refugees?|foreigners?|asylum|disabled|disabilit\w*|blind|deaf|autis\w*|wheelchairs?)\b",
    re.IGNORECASE)


def names_a_group(text: str) -> bool:
    return TERMS.search(text) is not None


@dataclass(frozen=True)
class Balance:
    """Hate rates among the hate-labelled texts that name a group and that name none, before
    and after, and how many texts were swapped in (`copies` of them repeats)."""
    naming_before: float
    naming_after: float
    others: float
    swapped: int
    copies: int

    def record(self) -> dict[str, float | int]:
        return {"hate_rate_naming_a_group_before": round(self.naming_before, 4),
                "hate_rate_naming_a_group_after": round(self.naming_after, 4),
                "hate_rate_naming_none": round(self.others, 4),
                "swapped_in": self.swapped, "copies": self.copies}


def _counts(texts: Sequence[TextExample]) -> tuple[int, int, int, int]:
    """(hate naming a group, clean naming a group, hate naming none, clean naming none)."""
    counts = [0, 0, 0, 0]
    for e in texts:
        label = e.labels.get(CATEGORY)
        if label in (0, 1):
            counts[(0 if names_a_group(e.text) else 2) + (1 - label)] += 1
    return counts[0], counts[1], counts[2], counts[3]


def _rate(hate: int, clean: int) -> float:
    return hate / (hate + clean) if hate + clean else 0.0


def balance_identity(sample: list[TextExample], pool: Sequence[TextExample], seed: int
                     ) -> tuple[list[TextExample], Balance]:
    """`sample` with clean texts naming a group swapped in for clean texts naming none, drawn
    from `pool` (the texts the sample was drawn from), until a named group carries no more hate
    than no group; the same number of texts."""
    hate_naming, clean_naming, hate_none, clean_none = _counts(sample)
    # Only the moderation sources' own texts make room; texts that carry a group (the clean
    # requests' origins: a register the model must keep seeing) stay.
    replaceable = [e for e in sample if e.labels.get(CATEGORY) == 0 and not e.group
                   and not names_a_group(e.text)]
    others = _rate(hate_none, clean_none)
    before = _rate(hate_naming, clean_naming)
    if not 0 < others < before:
        return sample, Balance(before, before, others, 0, 0)
    # s swapped texts make the rates equal, the others' rising as their clean texts leave:
    # h_n / (h_n + c_n + s) = h_o / (h_o + c_o - s)  =>  s = (h_n c_o - h_o c_n) / (h_n + h_o)
    wanted = (hate_naming * clean_none - hate_none * clean_naming) / (hate_naming + hate_none)
    swap = min(round(wanted), len(replaceable))
    rng = random.Random(f"{NAME}:{seed}")
    sampled = {id(e) for e in sample}
    candidates = [e for e in pool if e.labels.get(CATEGORY) == 0 and names_a_group(e.text)]
    unused = [e for e in candidates if id(e) not in sampled]
    rng.shuffle(unused)
    added = unused[:swap]
    copies = swap - len(added)
    added += [rng.choice(candidates) for _ in range(copies)] if candidates else []
    leaving = {id(e) for e in rng.sample(replaceable, len(added))}
    kept = [e for e in sample if id(e) not in leaving]
    out = kept + [replace(e, group=NAME) for e in added]
    # every text in was clean and named a group, every text out clean and named none
    moved = len(added)
    return out, Balance(before, _rate(hate_naming, clean_naming + moved),
                        _rate(hate_none, clean_none - moved), moved, copies)
