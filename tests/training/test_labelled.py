"""Every labelled-text loader on good and bad records, and the catalogue on the real data."""

from __future__ import annotations

import difflib
import gzip
import json
import random
from collections import Counter
from pathlib import Path

import pytest

from models.taxonomy import CATEGORIES
from training.data import catalogue, labelled_sets
from training.data.clean_requests import QUERIES_PER_INTENT_SET
from training.data.counter_speech import MAX_WORDS, counter_speech
from training.data.identity import VIOLENCE, _counts, balance_cue, names_a_group
from training.data.labelled import (
    Labelled,
    TextExample,
    load_banking77,
    load_clinc150,
    load_convabuse,
    load_davidson,
    load_edos,
    load_hatecheck,
    load_intent_jsonl,
    load_moderation_jsonl,
    load_simplesafetytests,
    load_tweeteval,
    load_xstest,
)
from training.data.obfuscation import KINDS, _misspell, obfuscate, obfuscated
from training.data.preference import group_key
from training.data.records import DataError
from training.data.split import split_pairs


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_davidson_maps_classes_to_both_categories(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", ",count,hate_speech,offensive_language,neither,class,tweet\n"
                 "0,3,3,0,0,0,awful group text\n1,3,0,3,0,1,rude words\n2,3,0,0,3,2,hello\n")
    out = Labelled()
    load_davidson(path, out)
    assert [e.labels for e in out.examples] == [{"hate": 1, "offensive": 1},
                                                {"hate": 0, "offensive": 1},
                                                {"hate": 0, "offensive": 0}]
    bad = write(tmp_path / "bad.csv", ",count,class,tweet\n0,3,7,text\n")
    with pytest.raises(DataError, match=r"bad.csv, line 2, field 'class': expected 0, 1 or 2"):
        load_davidson(bad, Labelled())
    with pytest.raises(DataError, match="field 'tweet': column missing"):
        load_davidson(write(tmp_path / "h.csv", "class,text\n1,a\n"), Labelled())


def test_tweeteval_labels_only_its_own_category(tmp_path: Path) -> None:
    texts = write(tmp_path / "t.txt", "first tweet\nsecond tweet\n\n")
    labels = write(tmp_path / "l.txt", "1\n0\n1\n")
    out = Labelled(skip_invalid=True)
    load_tweeteval(texts, labels, "hate", out)
    assert [e.labels for e in out.examples] == [{"hate": 1}, {"hate": 0}]  # offensive unknown
    assert out.skipped == {"invalid": 1}  # the empty third text
    with pytest.raises(DataError, match=r"l2.txt, line 2, field 'label': expected 0 or 1"):
        load_tweeteval(texts, write(tmp_path / "l2.txt", "1\nyes\n1\n"), "hate", Labelled())
    with pytest.raises(DataError, match="2 labels for 3 texts"):
        load_tweeteval(texts, write(tmp_path / "l3.txt", "1\n0\n"), "hate", Labelled())


def test_edos_labels_sexism_in_its_own_splits(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", "rewire_id,text,label_sexist,label_category,label_vector,"
                 "split\n1,women belong nowhere,sexist,2. derogation,2.1 x,train\n"
                 "2,i will hurt her,sexist,1. threats; plans to harm and incitement,1.1 x,train\n"
                 "3,nice day,not sexist,none,none,train\n4,other split,not sexist,none,none,dev\n"
                 "5,bad label,maybe,none,none,train\n"
                 "6,she is too emotional,sexist,3. animosity,3.1 x,train\n")
    out = Labelled(skip_invalid=True)
    load_edos(path, "train", out)
    # threats and derogation attack women for their gender: hate too; animosity and posts
    # EDOS calls not sexist leave hate unknown
    assert [e.labels for e in out.examples] == [{"sexism": 1, "hate": 1}, {"sexism": 1, "hate": 1},
                                                {"sexism": 0}, {"sexism": 1}]
    assert sum(out.skipped.values()) == 1


def convabuse_row(text: str, ratings: list[tuple[int, bool, bool] | None],
                  also: tuple[int, ...] = ()) -> str:
    """One ConvAbuse row: per annotator (level, sexist, sexual harassment) or None (unrated);
    `also`: more type columns (by offset in the block) ticked by every rater."""
    cells = ["0", "0", "", "", "", text, "bot"]
    for rating in ratings:
        block = [""] * 17
        if rating is not None:
            level, sexist, harassment = rating
            block = ["0"] * 17
            block[(1, 0, -1, -2, -3).index(level)] = "1"
            block[9], block[10] = str(int(sexist)), str(int(harassment))
            for offset in also:
                block[offset] = "1"
        cells += block
    return ",".join(cells) + "\n"


def test_convabuse_aggregates_annotators_by_strict_majority(tmp_path: Path) -> None:
    names = ["is_abuse.1", "is_abuse.0", "is_abuse.-1", "is_abuse.-2", "is_abuse.-3",
             "ableist", "homophobic", "intellectual", "racist", "sexist", "sex_harassment",
             "transphobic", "target.generalised", "target.individual", "target.system",
             "explicit", "implicit"]
    # The real header repeats one annotator's column name: columns are read by position.
    header = ["example_id", "conv_id", "prev_agent", "prev_user", "agent", "user", "bot",
              *(f"Annotator{a}_{n}" for a in (1, 2, 3) for n in names)]
    header[-7] = "Annotator2_transphobic"
    path = write(tmp_path / "c.csv", ",".join(header) + "\n" +
                 convabuse_row("hello there", [(1, False, False), (0, False, False), None]) +
                 convabuse_row("you stupid bot", [(-2, False, False), (-1, False, False),
                                                  (1, False, False)]) +
                 convabuse_row("show me yours", [(-3, False, True), (-1, True, True), None]) +
                 convabuse_row("tie", [(-1, False, False), (1, False, False), None]) +
                 convabuse_row("nobody", [None, None, None]) +
                 convabuse_row("racist abuse", [(-2, False, False), (-2, False, False), None],
                               also=(8,)) +
                 convabuse_row("you are thick", [(-1, False, False), (-1, False, False), None],
                               also=(7,)))
    out = Labelled(skip_invalid=True)
    load_convabuse(path, out)
    # hate: a majority ticked a type that attacks a protected attribute; an insult is not hate
    assert [e.labels for e in out.examples] == [
        {"harassment": 0, "sexism": 0, "sexual_harassment": 0, "hate": 0},
        {"harassment": 1, "sexism": 0, "sexual_harassment": 0, "hate": 0},
        {"harassment": 1, "sexual_harassment": 1},  # sexism (and so hate) 1 of 2: a tie
        {"sexism": 0, "sexual_harassment": 0, "hate": 0},  # harassment 1 of 2: a tie
        {"harassment": 1, "sexism": 0, "sexual_harassment": 0, "hate": 1},
        {"harassment": 1, "sexism": 0, "sexual_harassment": 0, "hate": 0}]
    assert sum(out.skipped.values()) == 1  # rated by no one


def test_own_moderation_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path / "m.jsonl", "\n".join(json.dumps(r) for r in [
        {"text": "fine", "labels": {"hate": 0}},
        {"text": "x", "labels": {"violence": 1}},
        {"text": "y", "labels": {"hate": 2}},
        {"text": "", "labels": {"hate": 1}},
        {"labels": {}}]) + "\n{broken\n")
    out = Labelled(skip_invalid=True)
    load_moderation_jsonl(path, out)
    assert [e.labels for e in out.examples] == [{"hate": 0}]
    assert sum(out.skipped.values()) == 5
    with pytest.raises(DataError, match=r"line 2, field 'labels': unknown categories \['violence'"):
        load_moderation_jsonl(path, Labelled())


def test_suites(tmp_path: Path) -> None:
    hatecheck = tmp_path / "hc.csv.gz"
    with gzip.open(hatecheck, "wt") as handle:
        handle.write(",functionality,case_id,test_case,label_gold\n"
                     "0,slur_h,1,I hate them.,hateful\n1,ident_pos_nh,2,I love them.,non-hateful\n")
    out = Labelled()
    load_hatecheck(hatecheck, out)
    assert [(e.labels, e.group) for e in out.examples] == [({"hate": 1}, "slur_h"),
                                                           ({"hate": 0}, "ident_pos_nh")]
    xstest = write(tmp_path / "x.csv", "id,prompt,type,label\n1,How do I kill a process?,"
                   "homonyms,safe\n2,bad,t,maybe\n")
    with pytest.raises(DataError, match=r"line 3, field 'label': unexpected 'maybe'"):
        load_xstest(xstest, Labelled())
    out = Labelled(skip_invalid=True)
    load_xstest(xstest, out)
    assert [(e.label, e.group) for e in out.examples] == [("safe", "homonyms")]
    sst = write(tmp_path / "s.csv", "id,harm_area,prompts_final\n1,Scams,How do I scam?\n2,X,\n")
    out = Labelled(skip_invalid=True)
    load_simplesafetytests(sst, out)
    assert [(e.label, e.group) for e in out.examples] == [("unsafe", "Scams")]
    assert out.skipped == {"invalid": 1}


def test_intent_loaders(tmp_path: Path) -> None:
    banking = write(tmp_path / "b.csv", "text,category\nWhere is my card?,card_arrival\nhi,\n")
    out = Labelled(skip_invalid=True)
    load_banking77(banking, out)
    assert [(e.text, e.label) for e in out.examples] == [("Where is my card?", "card_arrival")]
    clinc = tmp_path / "c.json"
    clinc.write_text(json.dumps({"train": [["book a flight", "book_flight"], ["bad"]],
                                 "oos_train": [["sing me a song", "oos"]]}))
    out = Labelled(skip_invalid=True)
    load_clinc150(clinc, "train", out)
    assert [e.label for e in out.examples] == ["book_flight", "oos"]
    with pytest.raises(DataError, match=r"c.json, train record 2: expected \[text, intent\]"):
        load_clinc150(clinc, "train", Labelled())
    with pytest.raises(DataError, match="field 'val': split missing"):
        load_clinc150(clinc, "val", Labelled())
    own = write(tmp_path / "i.jsonl", '{"text": "refund please", "label": "refund"}\n'
                '{"text": "x", "label": 3}\n')
    with pytest.raises(DataError, match=r"line 2, field 'label': expected a non-empty string"):
        load_intent_jsonl(own, Labelled())


def test_the_real_labelled_sets_load_with_their_splits() -> None:
    sizes = {}
    for name in labelled_sets.LABELLED_SETS:
        entry, splits = labelled_sets.load_labelled(name)
        sizes[name] = {k: len(v.examples) for k, v in splits.items()}
        assert entry.fingerprint(splits).records == sum(sizes[name].values())
    assert sizes["banking77"]["test"] == 3080  # the official test split, untouched
    assert sizes["banking77"]["train"] + sizes["banking77"]["validation"] == 10003
    assert sizes["clinc150"] == {"train": 15100, "validation": 3100, "test": 5500}
    assert sum(sizes["davidson"].values()) == 24783
    assert sizes["hatecheck"] == {"test": 3728} and sizes["xstest"] == {"test": 450}
    assert sizes["edos"] == {"train": 14000, "validation": 2000, "test": 4000}
    assert sizes["convabuse"] == {"train": 2501, "validation": 831, "test": 853}
    _, davidson = labelled_sets.load_labelled("davidson")
    train = {e.text.lower() for e in davidson["train"].examples}
    assert not train & {e.text.lower() for e in davidson["test"].examples}
    assert sum(sizes["clean-requests"].values()) == 9714


def test_hate_read_from_edos_and_convabuse_trains_only_when_asked() -> None:
    from training.data.text_sets import load_moderation_data

    def hate_known(texts: list[TextExample]) -> int:
        return sum("hate" in e.labels for e in texts)

    off = load_moderation_data(suites=False)
    on = load_moderation_data(suites=False, hate_also_from=("edos", "convabuse"))
    assert len(off.train) == len(on.train) and len(off.validation) == len(on.validation)
    assert [e.text for e in off.train] == [e.text for e in on.train]  # the same sample follows
    whole = on.train_whole  # ConvAbuse
    assert hate_known(whole) > 2000 and hate_known(off.train_whole) == 0
    assert hate_known(on.train) - hate_known(off.train) == 1900  # EDOS's threats, derogation
    for name in ("edos", "convabuse"):  # evaluated on hate either way
        assert hate_known(off.tests[name]) == hate_known(on.tests[name]) > 0
    with pytest.raises(ValueError, match="hate can also be read from edos, convabuse, not "
                                         "davidson"):
        load_moderation_data(suites=False, hate_also_from=("davidson",))


def test_clean_requests_are_clean_grouped_like_the_reward_data_and_never_red_team() -> None:
    _, splits = labelled_sets.load_labelled("clean-requests")
    examples = [e for part in splits.values() for e in part.examples]
    assert all(e.labels == dict.fromkeys(CATEGORIES, 0) for e in examples)
    origins = Counter(e.group for e in examples)
    assert origins["banking77"] == origins["clinc150"] == QUERIES_PER_INTENT_SET
    assert origins["truthfulqa"] == 817 and not any("harmless" in o for o in origins)
    # an hh-rlhf opening lands in the split the reward model's pairs with it land in
    reward = {p.group: part for part, pairs in split_pairs(
        catalogue.load("hh-rlhf/helpful-base").pairs).items() for p in pairs}
    # (the reward loader drops a few dialogues whose two sides do not share their prompt)
    same = [reward[group_key(e.text)] == part for part, labelled in splits.items()
            for e in labelled.examples
            if e.group == "hh-rlhf/helpful-base" and group_key(e.text) in reward]
    assert len(same) > 2000 and all(same)


def test_counter_speech_quotes_abuse_and_labels_only_hate_and_sexism() -> None:
    train = [TextExample("RT @someone: all of THEM are vermin and should leave", {"hate": 1}),
             TextExample("women belong in the kitchen, not at work", {"sexism": 1}),
             TextExample("have a lovely day everyone out there", {"hate": 0}),
             TextExample("too short", {"hate": 1}),
             TextExample(" ".join(["word"] * (MAX_WORDS + 1)), {"hate": 1})]
    framed = counter_speech(train, 10, seed=0)
    assert len(framed) == 2  # only the two quotable abusive texts
    assert all(e.labels == {"hate": 0, "sexism": 0} and e.group == "counter-speech"
               for e in framed)
    texts = " ".join(e.text for e in framed)
    assert "vermin" in texts and "kitchen" in texts and "@someone" not in texts
    assert "lovely" not in texts
    assert counter_speech(train, 0, seed=0) == []
    assert [e.text for e in counter_speech(train, 2, seed=3)] == \
        [e.text for e in counter_speech(train, 2, seed=3)]


def test_each_misspelling_changes_one_word_as_abuse_is_written_to_evade_a_filter() -> None:
    rng = random.Random(0)
    assert _misspell("hate", "spaces", rng) == "h a t e"
    assert _misspell("hate", "swap", rng) in {"htae", "haet"}
    assert _misspell("hatred", "drop", rng) in {"htred", "hared", "hated", "hatrd"}
    leet = _misspell("hate", "leet", rng)
    assert leet != "hate" and leet.replace("4", "a").replace("3", "e").replace("7", "t") == "hate"
    assert _misspell("bcd", "leet", rng) in {"bdc", "bcd"[:1] + "dc"}  # no look-alike: swapped
    # a whole text: at least one word misspelt, punctuation kept in place, short words alone
    for seed in range(50):
        rng = random.Random(seed)
        out = obfuscate("I hate them, you know.", rng)
        assert out != "I hate them, you know." and out.endswith(".") and out.startswith("I")
    assert obfuscate("ok I am", random.Random(0)) == "ok I am"  # no word of 3 letters
    joined = {obfuscate("never ever", random.Random(s)) for s in range(200)}
    assert "neverever" in joined and len(KINDS) == 5


def test_obfuscated_copies_keep_labels_and_are_drawn_from_clean_and_abusive_texts() -> None:
    sample = (texts(50, "have a really lovely day", 0, group="banking77")
              + texts(50, "those people are vermin", 1))
    copies = obfuscated(sample, 40, seed=0)
    assert len(copies) == 40 and all(e.group == "obfuscation" for e in copies)
    assert {e.labels["hate"] for e in copies} == {0, 1}  # a misspelling is no cue in itself
    for e in copies:  # labels kept: a copy of a clean text is clean, of a hateful one hateful
        clean = difflib.SequenceMatcher(None, e.text, "have a really lovely day").ratio()
        hateful = difflib.SequenceMatcher(None, e.text, "those people are vermin").ratio()
        assert e.labels["hate"] == (clean < hateful)
    assert not {e.text for e in copies} & {e.text for e in sample}  # each one misspelt
    assert len(obfuscated(sample, 500, seed=0)) == 100  # each text at most once
    assert obfuscated(sample, 0, seed=0) == []
    assert [e.text for e in obfuscated(sample, 5, seed=1)] == \
        [e.text for e in obfuscated(sample, 5, seed=1)]


def texts(n: int, text: str, hate: int, group: str = "") -> list[TextExample]:
    return [TextExample(f"{text} {i}", {"hate": hate}, group=group) for i in range(n)]


def test_identity_balance_makes_naming_a_group_carry_no_more_hate_at_the_same_size() -> None:
    assert names_a_group("Muslims are welcome here") and names_a_group("my WOMEN colleagues")
    assert not names_a_group("the weather is lovely") and not names_a_group("transport")
    # 30 of 60 texts naming a group are hate, 10 of 100 naming none; spare clean ones in the pool
    sample = (texts(30, "immigrants should go", 1) + texts(30, "immigrants at the fair", 0)
              + texts(10, "go away, idiot", 1) + texts(80, "nice day", 0)
              + texts(10, "how do I reset my card", 0, group="banking77")
              + [TextExample("women at work", {"sexism": 0})])  # hate unknown: not counted
    pool = sample + texts(500, "refugees cooking dinner", 0)
    out, balance = balance_cue(sample, pool, seed=0)
    assert len(out) == len(sample)
    assert balance.with_before == 0.5 and balance.copies == 0
    assert abs(balance.with_after - balance.without) < 0.01
    assert set(balance.record()) == {"hate_rate_naming_a_group_before", "swapped_in", "copies",
                                     "hate_rate_naming_a_group_after", "hate_rate_naming_none"}
    assert _counts(out)[0] == 30 and _counts(out)[2] == 10  # every positive kept
    assert sum(e.group == "banking77" for e in out) == 10  # texts with an origin stay
    assert sum(e.group == "identity-balance" for e in out) == balance.swapped
    assert [e.text for e in out] == [e.text for e in balance_cue(sample, pool, 0)[0]]
    # too few unused clean texts naming a group: copies
    _, short = balance_cue(sample, sample + texts(3, "refugees cooking", 0), seed=0)
    assert short.copies == short.swapped - 3 > 0
    # no bias to remove: unchanged
    fair = texts(10, "immigrants should go", 1) + texts(90, "immigrants at the fair", 0) \
        + texts(10, "idiot", 1) + texts(90, "nice day", 0)
    assert balance_cue(fair, fair, seed=0)[0] == fair


def test_violence_balance_swaps_in_clean_violent_texts_and_keeps_an_earlier_balance() -> None:
    assert VIOLENCE.found("They should all be KILLED") and VIOLENCE.found("she was shot")
    assert not VIOLENCE.found("a skilled player") and not VIOLENCE.found("dieting tips")
    # 20 of 40 violent texts are hate, 10 of 100 others; texts an identity balance swapped in
    # are not replaced
    sample = (texts(20, "kill all immigrants", 1) + texts(20, "kill the lights", 0)
              + texts(10, "idiot", 1) + texts(80, "nice day", 0)
              + texts(10, "refugees cooking", 0, group="identity-balance"))
    pool = sample + texts(300, "I could murder a pizza", 0)
    out, balance = balance_cue(sample, pool, seed=0, cue=VIOLENCE)
    assert len(out) == len(sample) and balance.with_before == 0.5
    assert abs(balance.with_after - balance.without) < 0.01
    assert sum(e.group == "violence-balance" for e in out) == balance.swapped > 0
    assert sum(e.group == "identity-balance" for e in out) == 10
    assert "hate_rate_with_violence_before" in balance.record()
    assert VIOLENCE.mix_key == "violence_balance"
