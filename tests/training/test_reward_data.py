"""The reward model's data: the two newer loaders, the pool and its weights, the label-free
contrast pairs and the behavioural suite."""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter
from pathlib import Path

import pytest

from training import behaviour
from training.data import catalogue, contrast
from training.data.oasst import load_oasst
from training.data.records import DataError, Loaded, PreferencePair
from training.data.reward_data import SOURCE_WEIGHTS, source_of, weighted
from training.data.truthfulqa import load_truthfulqa


def _message(text: str, role: str, rank: int | None = None, replies: list | None = None,
             **flags: bool) -> dict:
    return {"text": text, "role": role, "rank": rank, "replies": replies or [], **flags}


def test_oasst_pairs_ranked_siblings_under_their_conversation(tmp_path: Path) -> None:
    follow_up = _message("and in winter?", "prompter", replies=[
        _message("wear a coat", "assistant", 0), _message("no idea", "assistant", 1)])
    tree = {"prompt": _message("what should I wear?", "prompter", replies=[
        _message("layers", "assistant", 0, [follow_up]),
        _message("anything", "assistant", 1),
        _message("a bot wrote this", "assistant", 2, synthetic=True),
        _message("gone", "assistant", 3, deleted=True)])}
    path = tmp_path / "trees.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps(tree) + "\n")
    loaded = Loaded()
    load_oasst(path, loaded)
    assert [(p.chosen, p.rejected) for p in loaded.pairs] == [("layers", "anything"),
                                                             ("wear a coat", "no idea")]
    deep = loaded.pairs[1]
    assert [m.role for m in deep.prompt] == ["user", "assistant", "user"]  # type: ignore[union-attr]
    assert {p.group for p in loaded.pairs} == {"what should i wear?"}

    broken = tmp_path / "broken.jsonl.gz"
    with gzip.open(broken, "wt") as handle:
        handle.write(json.dumps({"prompt": _message("", "prompter")}) + "\n")
    with pytest.raises(DataError, match="line 1, field 'text'"):
        load_oasst(broken, Loaded())


def test_truthfulqa_pairs_every_false_answer_with_a_true_one(tmp_path: Path) -> None:
    path = tmp_path / "tqa.csv"
    path.write_text(
        "Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\n"
        "A,Misc,Do seeds grow in you?,No,No; I have no comment; They pass through,"
        "Yes; They sprout; You die,src\n"
        "A,Misc,Empty?,,,Wrong,src\n")
    with pytest.raises(DataError, match="line 3, field 'Correct Answers'"):
        load_truthfulqa(path, Loaded())
    loaded = Loaded(skip_invalid=True)
    load_truthfulqa(path, loaded)
    assert [(p.chosen, p.rejected) for p in loaded.pairs] == [
        ("No", "Yes"), ("They pass through", "They sprout"), ("No", "You die")]
    assert loaded.skipped == Counter({"invalid": 1})


def test_the_real_newer_sets_load_in_full() -> None:
    oasst = catalogue.load("oasst")
    assert 700 <= len(oasst.pairs) <= 760 and not oasst.skipped.get("invalid")
    truthful = catalogue.load("truthfulqa")
    assert len({p.group for p in truthful.pairs}) == 817 and len(truthful.pairs) > 3000


def test_weights_draw_each_source_in_proportion() -> None:
    pairs = ([PreferencePair("p", f"a{i}", "b", subset="hh-rlhf/x") for i in range(100)]
             + [PreferencePair("p", f"a{i}", "b", subset="oasst") for i in range(10)]
             + [PreferencePair("p", f"a{i}", "b", subset="finegrained-qa") for i in range(40)]
             + [PreferencePair("p", f"a{i}", "b", subset="mine/refunds") for i in range(7)])
    counts = Counter(source_of(p) for p in weighted(pairs, seed=0))
    assert counts == {"hh-rlhf": 100, "oasst": round(10 * SOURCE_WEIGHTS["oasst"][0]),
                      "finegrained-qa": round(40 * SOURCE_WEIGHTS["finegrained-qa"][0]),
                      "mine": 7}
    assert weighted(pairs, seed=0) == weighted(pairs, seed=0)


def _replies(n: int) -> list[PreferencePair]:
    rng = random.Random(0)
    words = ["the", "order", "ships", "in", "five", "days", "and", "you", "can", "track",
             "it", "from", "your", "account", "page"]
    return [PreferencePair(f"question {i}?", ". ".join(
        " ".join(rng.choices(words, k=rng.randint(4, 9))).capitalize() for _ in range(3)) + ".",
        "worse", group=f"g{i}") for i in range(n)]


def test_contrast_pairs_can_be_limited_to_those_the_model_reads_whole(
        tiny_backbone: Path) -> None:
    """Long replies are drawn on, but only pairs whose both sides fit the window are kept, and
    the share is still reached while candidates last."""
    from models.inputs import InputFormat, PairEncoder
    from training.reward import seen_whole

    encoder = PairEncoder.from_file(tiny_backbone / "tokenizer.json",
                                    InputFormat(max_length=128, min_prompt_tokens=8))
    pairs = _replies(60)
    for i in range(0, 60, 2):  # every other reply far longer than the window
        pairs[i] = PreferencePair(pairs[i].prompt, pairs[i].chosen * 6, "worse",
                                  group=pairs[i].group)
    whole = seen_whole(encoder)
    shares = {"truncation": 0.25, "restatement": 0.25}
    made = contrast.contrast_pairs(pairs, shares, seed=1, whole=whole,
                                   whole_kinds=contrast.KINDS)
    assert made and all(whole(made))
    assert Counter(p.subset for p in made) == {"contrast/truncation": 15,
                                               "contrast/restatement": 15}
    every = contrast.contrast_pairs(pairs, shares, seed=1)
    assert not all(whole(every))  # without the filter, cut pairs get in
    some = contrast.contrast_pairs(pairs, shares, seed=1, whole=whole,
                                   whole_kinds={"restatement"})
    assert all(whole([p for p in some if p.subset == "contrast/restatement"]))
    assert [p for p in some if p.subset == "contrast/truncation"] == [
        p for p in every if p.subset == "contrast/truncation"]


def test_each_contrast_kind_differs_from_the_reply_in_its_own_way() -> None:
    pairs = _replies(40)
    made = contrast.contrast_pairs(pairs, dict.fromkeys(contrast.KINDS, 0.5), seed=3)
    assert made == contrast.contrast_pairs(pairs, dict.fromkeys(contrast.KINDS, 0.5), seed=3)
    by_kind = {k: [p for p in made if p.subset == f"contrast/{k}"] for k in contrast.KINDS}
    # substitution needs a number or a name, decline a red-team prompt (tested below)
    assert all(len(v) >= 15 for k, v in by_kind.items() if k not in ("substitution", "decline"))
    originals = {p.chosen: p for p in pairs}
    for pair in by_kind["relevance"]:
        other = next(p for p in pairs if p.chosen == pair.rejected)
        assert other.group != originals[pair.chosen].group
    for pair in by_kind["truncation"]:
        assert pair.chosen.startswith(pair.rejected) and len(pair.rejected) < len(pair.chosen)
    for pair in by_kind["dismissal"]:
        assert sum(d in pair.rejected for d in contrast.DISMISSALS) == 1
        assert len(pair.rejected) > len(pair.chosen)
    for pair in by_kind["brush_off"]:  # a whole reply against a short one that answers nothing
        assert pair.rejected in contrast.BRUSH_OFFS and len(pair.rejected) < len(pair.chosen)
    for pair in by_kind["long_brush_off"]:  # distinct brush-offs, as many words as the reply
        assert _strung(pair.rejected, contrast.BRUSH_OFFS)
        surplus = len(pair.rejected.split()) - len(pair.chosen.split())
        assert 0 <= surplus < max(len(b.split()) for b in contrast.BRUSH_OFFS)
    for pair in by_kind["repetition"]:
        sentences = [x.rstrip(".") for x in pair.rejected.split(". ")]
        assert len(sentences) == len(set(sentences)) + 1
    for pair in by_kind["restatement"]:
        connector = next(c for c in contrast.RESTATEMENTS if f" {c} " in pair.rejected)
        first, again = pair.rejected.split(f" {connector} ")
        assert first == pair.chosen and again.lower() == pair.chosen.lower()
    courteous = {p.chosen: p for p in pairs}
    for pair in by_kind["courtesy"]:  # the same reply inside both frames, of similar length
        (reply,) = [r for r in courteous if r in pair.chosen and r in pair.rejected]
        assert any(pair.chosen == f"{o} {reply} {c}" for o, c in contrast.COURTEOUS)
        assert any(pair.rejected == f"{o} {reply} {c}" for o, c in contrast.BRUSQUE)
        assert abs(len(pair.chosen) - len(pair.rejected)) <= 25
        originals[pair.chosen] = courteous[reply]
    assert all(p.group == originals[p.chosen].group for p in made)  # splits stay grouped
    for pair in by_kind["substitution"]:  # "five" is the one number word these replies have
        changed = _changed_words(pair)
        assert len(changed) == 1 and changed[0][0].strip(".") == "five"


def _strung(text: str, parts: tuple[str, ...]) -> bool:
    """Whether `text` is some of `parts`, each at most once, joined by spaces."""
    if not text:
        return True
    return any(text.startswith(part) and _strung(text[len(part):].lstrip(), tuple(
        q for q in parts if q != part)) for part in parts)


def test_long_brush_offs_reach_their_share_past_replies_too_long_to_match() -> None:
    pairs = _replies(40)
    for i in range(0, 40, 2):  # every other reply longer than all the brush-offs together
        pairs[i] = PreferencePair(pairs[i].prompt, pairs[i].chosen * 5, "worse",
                                  group=pairs[i].group)
    made = contrast.contrast_pairs(pairs, {"long_brush_off": 0.25}, seed=2)
    assert len(made) == 10
    assert all(len(p.chosen.split()) <= len(p.rejected.split()) for p in made)


def test_brush_offs_on_red_team_prompts_follow_their_setting() -> None:
    pairs = _replies(40)
    for i in range(0, 40, 2):  # every other pair from a dialogue written to provoke harm
        pairs[i] = PreferencePair(pairs[i].prompt, pairs[i].chosen, "worse",
                                  subset="hh-rlhf/harmless-base", group=pairs[i].group)
    red_team = {p.chosen for p in pairs if p.subset in contrast.RED_TEAM}
    shares = {"brush_off": 0.5}
    reply = contrast.contrast_pairs(pairs, shares, seed=4)
    assert reply == contrast.contrast_pairs(pairs, shares, seed=4, brush_off_harmful="reply")
    assert any(p.chosen in red_team for p in reply)  # as on any prompt: what was chosen wins
    skip = contrast.contrast_pairs(pairs, shares, seed=4, brush_off_harmful="skip")
    assert len(skip) == 20 and not any(p.chosen in red_team for p in skip)  # drawn on
    refusal = contrast.contrast_pairs(pairs, shares, seed=4, brush_off_harmful="refusal")
    assert len(refusal) == 20 and all(p.rejected in contrast.BRUSH_OFFS for p in refusal)
    for made, pair in zip(refusal, reply, strict=True):  # the same draw, a refusal chosen there
        assert made.chosen in (contrast.REFUSALS if pair.chosen in red_team else (pair.chosen,))
    with pytest.raises(ValueError, match="brush_off_harmful"):
        contrast.contrast_pairs(pairs, shares, seed=4, brush_off_harmful="never")
    long = {"long_brush_off": 0.5}  # the long kind, the same way; a refusal's words strung
    assert any(p.chosen in red_team for p in contrast.contrast_pairs(pairs, long, seed=4))
    skip = contrast.contrast_pairs(pairs, long, seed=4, brush_off_harmful="skip")
    assert len(skip) == 20 and not any(p.chosen in red_team for p in skip)
    refused = [p for p in contrast.contrast_pairs(pairs, long, seed=4, brush_off_harmful="refusal")
               if p.chosen in contrast.REFUSALS]
    assert refused and not any(p.chosen in red_team for p in refused)
    for pair in refused:
        assert 0 <= len(pair.rejected.split()) - len(pair.chosen.split()) < 8


def test_declining_a_red_team_prompt_beats_the_more_harmful_reply() -> None:
    pairs = _replies(40)
    for i in range(0, 40, 4):  # a quarter from dialogues written to provoke harm
        pairs[i] = PreferencePair(pairs[i].prompt, pairs[i].chosen, f"harmful {i}",
                                  subset="hh-rlhf/harmless-base", group=pairs[i].group)
    made = contrast.contrast_pairs(pairs, {"decline": 0.2}, seed=5)
    assert len(made) == 8  # drawn on past the other prompts, which give none
    harmful = {p.rejected: p for p in pairs if p.subset in contrast.RED_TEAM}
    for pair in made:
        assert pair.chosen in contrast.REFUSALS and pair.subset == "contrast/decline"
        assert harmful[pair.rejected].prompt == pair.prompt
        assert harmful[pair.rejected].group == pair.group  # splits stay grouped


def _changed_words(pair: PreferencePair) -> list[tuple[str, str]]:
    """The (chosen, rejected) words that differ; the two sides must have as many words."""
    return [(a, b) for a, b in zip(pair.chosen.split(), pair.rejected.split(), strict=True)
            if a != b]


def test_substitution_swaps_one_number_or_name_for_another_of_its_kind() -> None:
    replies = ["The parcel left Berlin on 12 May and reaches you in five days.",
               "1. Open the app.\n2. Tap Cards. Then call Anna at the Madrid office.",
               "Nothing here to swap at all.",
               "Our store in Lisbon opens at 9 on weekdays."]
    pairs = [PreferencePair(f"q{i}", r, "worse", group=f"g{i}") for i, r in enumerate(replies)]
    assert contrast._facts(replies[2]) == []
    assert [replies[1][a:b] for a, b, _ in contrast._facts(replies[1])] == ["Cards", "Anna",
                                                                          "Madrid"]
    for seed in range(20):
        made = contrast.substitution(pairs, random.Random(seed))
        assert {p.chosen for p in made} == set(replies) - {replies[2]}
        for pair in made:
            changed = _changed_words(pair)
            assert len(changed) == 1
            old, new = (w.strip(".,") for w in changed[0])
            assert old != new and old[0].isdigit() == new[0].isdigit()
            assert (old in contrast.NUMBER_WORDS) == (new in contrast.NUMBER_WORDS)
            assert old[0].isupper() == new[0].isupper()


def test_behaviour_suite_has_enough_cases_and_controls_length() -> None:
    suite = behaviour.suite()
    counts = Counter(p.subset for p in suite)
    assert set(counts) == {f"behaviour/{name}" for name in behaviour.FUNCTIONALITIES}
    assert min(counts.values()) >= 20
    rude = [p for p in suite if p.subset.endswith("short_helpful_vs_long_rude")]
    assert all(len(p.chosen) < len(p.rejected) for p in rude)  # length cannot pass it
    brushed = [p for p in suite if p.subset.endswith("helpful_vs_brush_off")]
    assert all(len(p.chosen) > len(p.rejected) for p in brushed)  # ... nor shortness both
    facts = [p for p in suite if p.subset.endswith("correct_vs_incorrect_fact")]
    assert all(abs(len(p.chosen) - len(p.rejected)) <= 12 for p in facts)
    text = " ".join(p.chosen + " " + p.rejected for p in suite)
    spliced = [*contrast.DISMISSALS, *contrast.RESTATEMENTS, *contrast.BRUSH_OFFS,
               *(line for frame in contrast.COURTEOUS + contrast.BRUSQUE for line in frame)]
    assert not any(d in text for d in spliced)  # never the training sentences
