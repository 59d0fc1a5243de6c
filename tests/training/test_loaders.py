"""Every loader on good and bad records: the error names file, line (or record) and field."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from training.data import catalogue
from training.data.preference import (
    load_finegrained,
    load_generic,
    load_hh_rlhf,
    load_hhh,
    load_pandalm,
    load_ukpconvarg,
    majority,
)
from training.data.records import DataError, Loaded


def _load(parser, path: Path, skip: bool = False, **kw: str) -> Loaded:  # type: ignore[no-untyped-def]
    loaded = Loaded(skip_invalid=skip)
    parser(path, loaded, **kw)
    return loaded


# --- generic JSONL ---------------------------------------------------------------------------

def test_generic_good_records(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mine.jsonl", [
        {"prompt": "hi", "chosen": "hello", "rejected": "go away", "margin": 1.5},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                      {"role": "user", "content": "help"}], "chosen": "sure", "rejected": "no"},
        {"prompt": "same", "chosen": "x", "rejected": "x"},
    ])
    loaded = _load(load_generic, path)
    assert [p.margin for p in loaded.pairs] == [1.5, 0.0]
    assert loaded.pairs[1].prompt[-1].content == "help"  # type: ignore[union-attr]
    assert loaded.skipped == {"chosen == rejected": 1}


@pytest.mark.parametrize(("record", "field"), [
    ({"prompt": "hi", "rejected": "b"}, "chosen"),
    ({"prompt": "hi", "chosen": "", "rejected": "b"}, "chosen"),
    ({"prompt": "hi", "chosen": 3, "rejected": "b"}, "chosen"),
    ({"prompt": "hi", "chosen": "a", "rejected": "b", "margin": "big"}, "margin"),
    ({"messages": [{"role": "robot", "content": "x"}], "chosen": "a", "rejected": "b"},
     "messages.0.role"),
    ({"chosen": "a", "rejected": "b"}, None),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "a"}],
      "chosen": "a", "rejected": "b"}, None),  # the history ends with the assistant's turn
])
def test_generic_bad_record_names_file_line_field(tmp_path: Path, record: dict[str, object],
                                                  field: str | None) -> None:
    good = {"prompt": "p", "chosen": "a", "rejected": "b"}
    path = write_jsonl(tmp_path / "mine.jsonl", [good, good, record])
    with pytest.raises(DataError) as info:
        _load(load_generic, path)
    error = info.value
    assert error.path == path and error.where == "line 3" and error.field == field
    assert str(path) in str(error) and "line 3" in str(error)


def test_generic_invalid_json_and_skip_invalid(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{oops\n\n[1]\n')
    with pytest.raises(DataError, match=r"line 2.*invalid JSON"):
        _load(load_generic, path)
    loaded = _load(load_generic, path, skip=True)
    assert len(loaded.pairs) == 1 and loaded.skipped == {"invalid": 2}


# --- hh-rlhf ---------------------------------------------------------------------------------

def _hh(prompt: str, answer: str) -> str:
    return f"{prompt}\n\nAssistant: {answer}"


def test_hh_rlhf_splits_prompt_turns_and_response(tmp_path: Path) -> None:
    prompt = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help me"
    path = tmp_path / "test.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps({"chosen": _hh(prompt, "Sure."),
                                 "rejected": _hh(prompt, "No.")}) + "\n")
    (pair,) = _load(load_hh_rlhf, path, subset="hh").pairs
    assert [(m.role, m.content) for m in pair.prompt] == [  # type: ignore[union-attr]
        ("user", "hi"), ("assistant", "hello"), ("user", "help me")]
    assert (pair.chosen, pair.rejected, pair.group) == ("Sure.", "No.", "hi")


@pytest.mark.parametrize(("record", "field", "problem"), [
    ({"chosen": _hh("\n\nHuman: a", "x")}, "rejected", "is missing"),
    ({"chosen": _hh("\n\nHuman: a", "x"), "rejected": _hh("\n\nHuman: b", "y")}, "rejected",
     "does not share the prompt"),
    ({"chosen": "\n\nHuman: a", "rejected": _hh("\n\nHuman: a", "y")}, "chosen",
     "does not end with an assistant turn"),
    ({"chosen": _hh("\n\nHuman: a", ""), "rejected": _hh("\n\nHuman: a", "y")}, "chosen",
     "empty"),
    ({"chosen": "no markers", "rejected": _hh("\n\nHuman: a", "y")}, "chosen", "dialogue"),
])
def test_hh_rlhf_bad_records(tmp_path: Path, record: dict[str, str], field: str,
                             problem: str) -> None:
    path = write_jsonl(tmp_path / "test.jsonl", [record])
    with pytest.raises(DataError, match=problem) as info:
        _load(load_hh_rlhf, path, subset="hh")
    assert (info.value.where, info.value.field) == ("line 1", field)


# --- PandaLM, HHH, FineGrainedRLHF ------------------------------------------------------------

def _write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_majority_vote() -> None:
    assert majority([2, 2, 1]) == 2 and majority([0, 0, 1]) == 0 and majority([0, 1, 2]) == 0


def test_pandalm(tmp_path: Path) -> None:
    base = {"instruction": "Fix it", "input": "teh cat", "response1": "the cat", "response2": "x"}
    path = _write_json(tmp_path / "p.json", [
        {**base, "annotator1": 1, "annotator2": 1, "annotator3": 2},
        {**base, "annotator1": 2, "annotator2": 0, "annotator3": 2},
        {**base, "annotator1": 0, "annotator2": 1, "annotator3": 2},
    ])
    loaded = _load(load_pandalm, path)
    assert [(p.chosen, p.rejected) for p in loaded.pairs] == [("the cat", "x"), ("x", "the cat")]
    assert loaded.pairs[0].prompt == "Fix it\nteh cat"
    assert loaded.skipped == {"tie": 1}
    bad = _write_json(tmp_path / "bad.json", [{**base, "response1": False, "annotator1": 1,
                                               "annotator2": 1, "annotator3": 1}])
    with pytest.raises(DataError, match=r"record 1, field 'response1': must be a string"):
        _load(load_pandalm, bad)
    bad_vote = _write_json(tmp_path / "vote.json", [{**base, "annotator1": 7}])
    with pytest.raises(DataError, match="annotator1"):
        _load(load_pandalm, bad_vote)


def _hhh_text(instruction: str, response: str) -> str:
    return (f"###Task Description:\n...\n\n###The instruction to evaluate:\n{instruction}\n\n"
            f"###Response to evaluate:\n{response}\n\n###Score Rubrics:\n[...]")


def test_hhh(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "h.json", [
        {"source": "harmless", "chosen_instruction": _hhh_text("Q?", "kind"),
         "rejected_instruction": _hhh_text("Q?", "rude")}])
    (pair,) = _load(load_hhh, path).pairs
    assert (pair.prompt, pair.chosen, pair.rejected, pair.subset) == ("Q?", "kind", "rude",
                                                                      "hhh/harmless")
    bad = _write_json(tmp_path / "b.json", [
        {"source": "honest", "chosen_instruction": _hhh_text("Q?", "a"),
         "rejected_instruction": "no markers here"}])
    with pytest.raises(DataError, match="record 1, field 'rejected_instruction'"):
        _load(load_hhh, bad)


def test_finegrained(tmp_path: Path) -> None:
    answers = {f"prediction {i}": f"answer {i}" for i in range(1, 5)}
    path = _write_json(tmp_path / "f.json", [
        {"question": "Q", **answers, "preference": [1, 2, 0, 1, 0, 2]}])
    loaded = _load(load_finegrained, path)
    assert [(p.chosen[-1], p.rejected[-1]) for p in loaded.pairs] == [
        ("1", "2"), ("3", "1"), ("2", "3"), ("4", "3")]
    assert loaded.skipped == {"tie": 2}
    bad = _write_json(tmp_path / "b.json", [{"question": "Q", **answers, "preference": [1, 2]}])
    with pytest.raises(DataError, match="record 1, field 'preference'"):
        _load(load_finegrained, bad)


def _tar(path: Path, members: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_ukpconvarg(tmp_path: Path) -> None:
    header = "#id\tlabel\ta1\ta2\n"
    path = _tar(tmp_path / "u.tar.gz", {
        "CSV/evolution-vs-creation_evolution.csv":
            header + "1_2\ta1\tfossils show it\tbecause\n3_4\ta2\tno\tthe record is clear\n"})
    loaded = _load(load_ukpconvarg, path)
    assert [(p.chosen, p.rejected) for p in loaded.pairs] == [
        ("fossils show it", "because"), ("the record is clear", "no")]
    assert loaded.pairs[0].prompt == "Debate: evolution vs creation. Side: evolution"
    bad = _tar(tmp_path / "b.tar.gz", {"CSV/t_s.csv": header + "1_2\ta3\tx\ty\n1_3\tx\n"})
    with pytest.raises(DataError, match=r"CSV/t_s\.csv, line 2, field 'label'"):
        _load(load_ukpconvarg, bad)
    assert _load(load_ukpconvarg, bad, skip=True).skipped == {"invalid": 2}


# --- catalogue --------------------------------------------------------------------------------

def test_catalogue_refuses_changed_or_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="fetch it from WeOpenML/PandaLM"):
        catalogue.load("pandalm", tmp_path)
    (tmp_path / "pandalm-testset").mkdir()
    (tmp_path / "pandalm-testset" / "testset-v1.json.gz").write_bytes(b"tampered")
    with pytest.raises(catalogue.ChecksumError, match="differs from its public source"):
        catalogue.load("pandalm", tmp_path)
    with pytest.raises(KeyError, match="unknown set"):
        catalogue.load("nope", tmp_path)


def test_catalogue_loads_real_data_with_counts() -> None:
    """The shared data as the data README describes it."""
    loaded = catalogue.load("pandalm")
    assert len(loaded.pairs) + loaded.skipped["invalid"] == 472 + 422  # majority, ties dropped
    assert loaded.skipped["tie"] == 105
    assert len(catalogue.load("hhh").pairs) == 221
    finegrained = catalogue.load("finegrained-qa")
    assert len(finegrained.pairs) == 2616 and finegrained.skipped["tie"] == 384
    assert len(catalogue.load("ukpconvarg").pairs) == 11650
