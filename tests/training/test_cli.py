"""`alignserve` end to end on the tiny model and the real data: train, report, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.manifest import Manifest, sha256_file
from tests.conftest import synthetic_pairs, write_jsonl
from training.cli import main


def test_training_run_writes_model_report_and_plots(trained_run: Path) -> None:
    report = json.loads((trained_run / "report.json").read_text())
    expected_sets = {"validation", "validation (T=1)", "hh-rlhf", "pandalm", "hhh",
                     "finegrained-qa", "ukpconvarg", "hh-rlhf/harmless-base",
                     "hh-rlhf/helpful-base",
                     "hh-rlhf/helpful-online", "hh-rlhf/helpful-rejection-sampled",
                     "hhh/harmless", "hhh/helpful", "hhh/honest", "hhh/other"}
    assert expected_sets <= set(report["eval"])
    for metrics in report["eval"].values():
        assert {"accuracy", "log_loss", "brier", "ece", "n", "mean_margin"} <= set(metrics)
    assert report["eval"]["hhh"]["n"] == 221
    own = next(f for f in report["data"] if f["name"] == "own")
    assert own["records"] == 300 and own["skipped"] == {"invalid": 1}
    assert 10 < report["eval"]["own"]["n"] < 60  # its own test split, about 10%
    assert report["split"]["train_used"] == 64 and report["training"]["steps"] == 8
    assert set(report["timings"]) >= {"train_s", "evaluate_s", "total_s"}
    assert {f["name"] for f in report["data"]} >= {"hh-rlhf/helpful-base", "pandalm"}
    for plot in report["plots"]:
        assert (trained_run / plot).read_bytes()[:4] == b"\x89PNG"

    model_dir = trained_run / "model"
    manifest = Manifest.load(model_dir)
    assert manifest.task == "reward" and manifest.calibration and manifest.normalisation
    assert manifest.calibration.temperature == pytest.approx(report["calibration"]["temperature"])
    assert manifest.input.max_length == 64
    for name, digest in manifest.files.items():
        assert sha256_file(model_dir / name) == digest


def test_evaluate_generic_file_as_json(trained_run: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    long = {"prompt": "x", "chosen": "word " * 100, "rejected": "short"}  # past the 64 tokens
    data = write_jsonl(tmp_path / "mine.jsonl", [*synthetic_pairs(20), long, {"prompt": "x"}])
    assert main(["evaluate", "reward", "--model", str(trained_run / "model"), "--data", str(data),
                 "--json", "--skip-invalid"]) == 0
    out = json.loads(capsys.readouterr().out)
    mine = out["eval"]["mine"]
    assert mine["n"] == 21 and out["skipped"]["mine"] == {"invalid": 1}
    assert 0 <= mine["accuracy"] <= 1
    assert {"longer_wins", "n_chosen_shorter", "acc_chosen_cut"} <= set(mine)
    assert (mine["n_chosen_cut"], mine["n_rejected_cut"]) == (1, 0)  # the window cut one reply


def test_evaluate_reports_each_subset_of_a_file(trained_run: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    records = [{**r, "subset": ("refunds", "shipping")[i % 2]}
               for i, r in enumerate(synthetic_pairs(20))]
    data = write_jsonl(tmp_path / "mine.jsonl", records)
    assert main(["evaluate", "reward", "--model", str(trained_run / "model"), "--data", str(data),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["eval"]
    assert out["mine"]["n"] == 20
    assert out["mine/refunds"]["n"] == out["mine/shipping"]["n"] == 10


def test_evaluate_chosen_catalogued_sets(trained_run: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "reward", "--model", str(trained_run / "model"), "--sets", "hhh",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["eval"]["hhh"]["n"] == 221 and "pandalm" not in out["eval"]
    assert main(["evaluate", "reward", "--model", str(trained_run / "model"), "--sets",
                 "nope"]) == 2
    assert "unknown sets ['nope']" in capsys.readouterr().err


def test_evaluate_reports_bad_records_without_traceback(trained_run: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "chosen": "a"}])
    assert main(["evaluate", "reward", "--model", str(trained_run / "model"), "--data",
                 str(data)]) == 2
    err = capsys.readouterr().err
    assert f"{data}, line 1, field 'rejected'" in err and "Traceback" not in err
    assert "--skip-invalid" in err  # the way past it is named


def test_resume_after_interruption_completes(tiny_backbone: Path, tmp_path: Path) -> None:
    from training.config import PRESETS
    from training.reward import train_reward

    config = PRESETS["default"].with_overrides(
        backbone=str(tiny_backbone), max_length=64, min_prompt_tokens=8, max_train_pairs=32,
        grad_accum=1, checkpoint_every=2, freeze_embeddings=False)
    assert train_reward(config, tmp_path, stop_at=2) is None
    assert not (tmp_path / "report.json").exists()
    result = train_reward(config, tmp_path, resume=True)
    assert result is not None and result.report["training"]["steps"] == 4


def test_bad_backbone_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "reward", "--output", str(tmp_path), "--backbone",
                 str(tmp_path / "nope")]) == 2
    assert "neither 'minilm' nor a local model directory" in capsys.readouterr().err


def test_train_and_evaluate_the_classifiers(moderation_run: Path, intent_run: Path,
                                            tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The session's CLI runs wrote a model, report and plots; evaluate reads them back."""
    report = json.loads((moderation_run / "report.json").read_text())
    assert {"davidson/hate", "tweeteval-hate/hate", "hatecheck", "xstest",
            "simplesafetytests", "own-moderation/offensive"} <= set(report["eval"])
    assert report["calibration"]["threshold_goal"]
    # over-flagging on each split's clean rows; clean requests, counter-speech and misspelt
    # copies in the mix
    assert 0 <= report["eval"]["davidson/clean"]["flag_rate"] <= 1
    assert report["eval"]["clean-requests/clean"]["n"] == 966
    mix = report["training_mix"]
    assert mix["texts"] == 256 + 13 + 26 and mix["counter-speech"] == 13  # round(0.05 * 256)
    assert mix["obfuscation"] == 26  # round(0.1 * 256)
    assert {"banking77", "clinc150", "truthfulqa"} & set(mix)
    assert {p.name for p in moderation_run.iterdir()} >= {"pr_curves.png", "reliability.png",
                                                          "training_curves.png"}
    own = write_jsonl(tmp_path / "mine.jsonl", [
        {"text": "you are awful", "labels": {"offensive": 1}},
        {"text": "good day", "labels": {"offensive": 0, "hate": 0}}])
    assert main(["evaluate", "moderation", "--model", str(moderation_run / "model"),
                 "--data", str(own), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)["eval"]
    assert figures["mine/offensive"]["n"] == 2 and figures["mine/hate"]["n"] == 1

    intent = json.loads((intent_run / "report.json").read_text())
    assert "clinc150 out-of-scope" in intent["eval"] and intent["confusions"]["clinc150"]
    mine = write_jsonl(tmp_path / "intents.jsonl", [{"text": "book a flight to paris",
                                                    "label": "book_flight"},
                                                   {"text": "sing to me", "label": "oos"}])
    assert main(["evaluate", "intent", "--model", str(intent_run / "model"), "--data",
                 str(mine), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)["eval"]
    assert figures["intents"]["n"] == 1 and figures["intents out-of-scope"]["n_out_of_scope"] == 1
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "hello", "label": "no_such_intent"}])
    assert main(["evaluate", "intent", "--model", str(intent_run / "model"), "--data",
                 str(bad)]) == 2
    assert "intents the model does not know: ['no_such_intent']" in capsys.readouterr().err


def test_data_list_covers_every_catalogued_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list"]) == 0
    names = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert {"hh-rlhf/helpful-base", "oasst", "truthfulqa", "hhh"} <= names  # preference sets
    assert {"davidson", "hatecheck", "banking77", "clinc150"} <= names  # and labelled ones


def test_every_setting_is_a_typed_flag() -> None:
    from training.cli import build_parser

    args = build_parser().parse_args(["train", "reward", "--output", "x", "--max-train-pairs",
                                      "12", "--lr", "1e-4", "--no-length-term", "--device",
                                      "cpu"])
    assert (args.max_train_pairs, args.lr, args.length_term, args.device) == (12, 1e-4, False,
                                                                              "cpu")


def test_a_settings_help_gives_the_value_of_its_tasks_default_preset(
        capsys: pytest.CaptureFixture[str]) -> None:
    for task, shown in (("moderation", "(default preset: 0.05)"),
                        ("reward", "(default preset: 0.0)")):
        with pytest.raises(SystemExit):
            main(["train", task, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        start = text.index("--counter-speech COUNTER_SPEECH Moderation")  # the help, not usage
        assert text[start:text.index(" --obfuscation", start)].endswith(shown)


def test_every_command_prints_its_help() -> None:
    """argparse formats help text with %: a setting's help that carries a bare one (a
    figure in per cent) breaks --help for its whole command."""
    import argparse

    from training.cli import build_parser

    def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return [parser, *(p for a in subs for child in a.choices.values()
                          for p in parsers(child))]

    for parser in parsers(build_parser()):
        assert parser.format_help()


def test_a_bad_training_file_names_the_flag_that_skips_it(
        tiny_backbone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "chosen": "a"}])
    assert main(["train", "reward", "--output", str(tmp_path / "run"), "--backbone",
                 str(tiny_backbone), "--train-data", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"{data}, line 1, field 'rejected'" in err and "--skip-invalid" in err
