"""alignserve: train, evaluate and inspect preference models.

    alignserve train reward --preset default --output runs/reward
    alignserve train reward --preset default --output runs/reward --resume
    alignserve train moderation --preset default --output runs/moderation
    alignserve train intent --dataset clinc150 --output runs/intent-clinc150
    alignserve evaluate reward --model runs/reward/model --data my_pairs.jsonl --json
    alignserve data list
    alignserve feedback stats
    alignserve feedback export --kind preference --since 2026-11-01 --out feedback.jsonl
    alignserve retrain reward --from reward --output runs/retrain-1
    alignserve models promote reward:20261127-101500 --url http://127.0.0.1:3000
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import typing
from dataclasses import MISSING, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.config import TASK_PRESETS, TrainConfig


def _flag_type(annotation: Any) -> Any:
    """The type a flag parses to: `int | None` parses as int (None is the preset's default)."""
    if isinstance(annotation, types.UnionType):
        (annotation,) = (a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _add_config_flags(parser: argparse.ArgumentParser, task: str | None = None) -> None:
    """Every TrainConfig field becomes a flag overriding the preset; help comes from the field,
    with the value of the task's default preset (the field's default when no task is given)."""
    group = parser.add_argument_group("training settings (override the preset)")
    hints = typing.get_type_hints(TrainConfig)
    preset = TASK_PRESETS[task]["default"] if task else None
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = (getattr(preset, f.name) if preset is not None
                   else f.default if f.default is not MISSING else None)
        text = f"{f.metadata['help']} (default preset: {default})"
        if hints[f.name] is bool:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=None, help=text)
        else:
            group.add_argument(flag, dest=f.name, type=_flag_type(hints[f.name]), default=None,
                               metavar=f.name.upper(), help=text)


def _train_flags(parser: argparse.ArgumentParser, task: str, presets: str, own: str) -> None:
    parser.add_argument("--preset", choices=sorted(TASK_PRESETS[task]), default="default",
                        help=f"default: {presets}.")
    parser.add_argument("--output", type=Path, required=True,
                        help="Directory for everything the run writes: model, checkpoints, "
                             "report.json and plots.")
    parser.add_argument("--name", default=task, help="Model name written to the manifest.")
    parser.add_argument("--resume", action="store_true",
                        help="Continue an interrupted run from its last checkpoint in --output; "
                             "the result equals an uninterrupted run with the same settings.")
    parser.add_argument("--train-data", type=Path, action="append", default=[], help=own)
    parser.add_argument("--skip-invalid", action="store_true",
                        help="Skip and count invalid records in --train-data instead of "
                             "stopping at the first.")
    _data_dir_flag(parser)
    _add_config_flags(parser, task)


def _artifact_flags(parser: argparse.ArgumentParser, output_help: str) -> None:
    """What every command that builds an artifact for the store takes."""
    parser.add_argument("--name", required=True,
                        help="Store name (lowercase letters, digits, '.', '_', '-').")
    parser.add_argument("--output", type=Path, default=None, help=output_help)
    parser.add_argument("--no-store", action="store_true",
                        help="Build and check the artifact but do not save it to the store.")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and onnxruntime CPU threads (default: all cores).")
    _data_dir_flag(parser)


def _ensemble_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ensemble-rule", choices=["mean-std", "min"], default="mean-std",
                        help="The conservative reward: mean - λ·std of the members, or their "
                             "minimum.")
    parser.add_argument("--ensemble-penalty", type=float, default=1.0, metavar="λ",
                        help="λ in mean - λ·std (the service's ALIGNSERVE_ENSEMBLE_PENALTY "
                             "overrides it).")


def _evaluate_flags(parser: argparse.ArgumentParser, data_help: str) -> None:
    parser.add_argument("--model", type=Path, required=True,
                        help="A trained model directory (the model/ folder a run writes).")
    parser.add_argument("--data", type=Path, action="append", default=[],
                        help=f"{data_help}; repeat for several. Without --data, the catalogued "
                             "held-out sets are used.")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="Skip and count invalid records instead of stopping at the first.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    parser.add_argument("--max-tokens", type=int, default=4096, help="Token budget per batch.")
    _data_dir_flag(parser)


def _data_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="Directory holding the public sets (default: $ALIGNSERVE_DATA_DIR, "
                             "else ../shared/data beside the repository).")


def _time_flags(parser: argparse.ArgumentParser) -> None:
    for flag, text in (("--since", "Only records received at or after this time"),
                       ("--until", "Only records received before this time")):
        parser.add_argument(flag, type=_utc, default=None,
                            help=f"{text} (ISO 8601, UTC unless it says otherwise).")


def _utc(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _store_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--feedback-db", default=None, help="SQLite file (default: "
                        "$ALIGNSERVE_FEEDBACK_DB, else feedback.sqlite3).")
    parser.add_argument("--feedback-dsn", default=None, help="PostgreSQL DSN (default: "
                        "$ALIGNSERVE_FEEDBACK_DSN); wins over --feedback-db.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alignserve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="Train a model from the catalogued data.")
    train_tasks = train.add_subparsers(dest="task", required=True)
    reward = train_tasks.add_parser(
        "reward", help="Bradley-Terry reward model on a weighted pool of preference sources "
                       "and label-free contrast pairs, evaluated on every set.")
    _train_flags(reward, "reward", "about 10 minutes on 2 CPU cores, on a sample of the "
                 "training pairs; full: every pair at 256 tokens (about 45 minutes on CPU)",
                 "Your own JSONL of {prompt|messages, chosen, rejected, margin?} pairs, added to "
                 "hh-rlhf before the grouped split; its test split is reported as a set of its "
                 "own. Repeat for several files.")
    reward.add_argument("--ensemble", type=int, default=1, metavar="K",
                        help="Train K members (seeds --seed .. --seed+K-1) into OUTPUT/member-K "
                             "and serve them as one ensemble model (OUTPUT/model): the reward is "
                             "their mean, each answer adds their spread and a conservative "
                             "reward. K times the training time.")
    _ensemble_flags(reward)
    moderation = train_tasks.add_parser(
        "moderation", help="Multi-label classifier (hate, offensive, harassment, sexual "
                           "harassment, sexism) on Davidson, TweetEval, EDOS and "
                           "ConvAbuse, tested on their held-out splits, HateCheck, XSTest and "
                           "SimpleSafetyTests.")
    _train_flags(moderation, "moderation", "about 10 minutes on 2 CPU cores on 16,000 training "
                 "texts; full: all ~65,000",
                 "Your own JSONL of {text, labels: {CATEGORY: 0|1, ...}} (hate, offensive, "
                 "harassment, sexual_harassment, sexism; a category left out is "
                 "unknown), carved 80/10/10 by text and added to the training data.")
    intent = train_tasks.add_parser(
        "intent", help="Multi-class intent classifier (banking77, or CLINC150 with an "
                       "out_of_scope threshold).")
    intent.add_argument("--dataset", choices=["banking77", "clinc150", "own"],
                        default="banking77", help="Catalogued intent set, or 'own' for only "
                        "the --train-data files.")
    _train_flags(intent, "intent", "1 epoch, about 2 minutes on 2 CPU cores; full: 6 epochs",
                 "Your own JSONL of {text, label}, carved 80/10/10 by text and added to the "
                 "training data.")

    evaluate = commands.add_parser("evaluate", help="Evaluate a trained model.")
    eval_tasks = evaluate.add_subparsers(dest="task", required=True)
    ev = eval_tasks.add_parser(
        "reward", help="Pairwise accuracy, log-loss, Brier, ECE and mean margin per set.")
    _evaluate_flags(ev, "A JSONL file of {prompt|messages, chosen, rejected, margin?} records")
    ev.add_argument("--sets", action="append", default=[], metavar="NAME",
                    help="Only these catalogued sets (hh-rlhf, pandalm, hhh, finegrained-qa, "
                         "ukpconvarg); repeat for several. Default: all of them.")

    for task, text, data_help in (
            ("moderation", "Per category AUPRC, ROC-AUC, precision/recall/F1 at the model's "
             "thresholds and ECE; HateCheck, XSTest and SimpleSafetyTests.",
             "A JSONL file of {text, labels: {category: 0|1}} records"),
            ("intent", "Top-1 accuracy, macro-F1, ECE; in-scope accuracy and out-of-scope "
             "recall where the model has a threshold.", "A JSONL file of {text, label} records")):
        _evaluate_flags(eval_tasks.add_parser(task, help=text), data_help)

    export = commands.add_parser(
        "export", help="ONNX artifact (fused fp32, fp16, int8 if accurate) into the model store.")
    export.add_argument("--checkpoint", type=Path, required=True,
                        help="A trained model directory (the model/ folder a run writes).")
    _artifact_flags(export, "Where to build the artifact (default: artifact/ beside the "
                            "checkpoint); it is then copied into the BentoML store.")

    models = commands.add_parser("models", help="Artifacts in the BentoML model store "
                                                "($BENTOML_HOME/models).")
    model_cmds = models.add_subparsers(dest="action", required=True)
    model_cmds.add_parser("list", help="Tag, task, files and int8 status of every artifact.")
    for action, text in (("show", "The manifest of one artifact, as JSON."),
                         ("verify", "Check every file's sha256 against the manifest.")):
        model_cmds.add_parser(action, help=text).add_argument(
            "tag", help="name (latest version) or name:version")

    build = model_cmds.add_parser(
        "build-defaults", help="Train and export each default model (reward, moderation, "
                               "intent) that the store lacks, showing stage N of M and the time "
                               "left; what `make serve` runs first.")
    build.add_argument("--runs", type=Path, default=Path("runs"),
                       help="Where the training runs go (runs/NAME); a finished one is only "
                            "exported, an interrupted one resumes.")
    _data_dir_flag(build)
    ensemble = commands.add_parser(
        "ensemble", help="Make trained reward models (e.g. seeds of one recipe) one ensemble "
                         "model: calibrated and evaluated as their mean, with their spread and a "
                         "conservative reward in every answer. Then `alignserve export` it.")
    ensemble.add_argument("--members", type=Path, nargs="+", required=True,
                          help="Trained reward model directories (the model/ a run writes).")
    ensemble.add_argument("--output", type=Path, required=True,
                          help="Where model/ (the ensemble) and report.json go.")
    ensemble.add_argument("--name", default="reward-ensemble", help="Model name.")
    ensemble.add_argument("--max-tokens", type=int, default=4096, help="Token budget per batch.")
    _ensemble_flags(ensemble)
    _data_dir_flag(ensemble)

    imported = commands.add_parser(
        "import", help="Bring your own model: a local Hugging Face *ForSequenceClassification "
                       "directory (BERT, RoBERTa, DeBERTa-v2/v3, ELECTRA) through the parity "
                       "gate and the int8 check into the model store, served like a trained "
                       "one. Nothing is downloaded.")
    imported.add_argument("directory", type=Path, help="config.json, weights and tokenizer.")
    imported.add_argument("--task", choices=["reward", "moderation", "intent"], required=True,
                          help="reward: one logit for a (prompt, response) pair, read as the "
                               "tokenizer's own pair; moderation: one sigmoid per label; "
                               "intent: a softmax over the labels (both read a single text).")
    imported.add_argument("--max-length", type=int, default=None,
                          help="Tokens per input (default: the model's positions, at most 512).")
    _artifact_flags(imported, "Where the checkpoint (model/) and the artifact (artifact/) are "
                              "built (default runs/import-NAME).")

    promote = model_cmds.add_parser(
        "promote", help="Make a running service serve this version now, with no downtime "
                        "(POST /v1/admin/models/{role}; the API key from ALIGNSERVE_API_KEY).")
    promote.add_argument("tag", help="name:version (or a name for its latest version)")
    promote.add_argument("--url", default="http://127.0.0.1:3000", help="The service.")

    score = commands.add_parser(
        "score", help="Score a JSONL or Parquet file of records offline with a stored model "
                      "(the serving engine, no HTTP): locally, or on Ray Data with --ray.")
    score.add_argument("--model", required=True, help="Store tag: name or name:version.")
    score.add_argument("--input", type=Path, required=True, help=".jsonl or .parquet records "
                       "(service/offline.py lists the fields each task reads).")
    score.add_argument("--output", type=Path, required=True, help="A directory: part-NNNNN "
                       "files of scored records, rejected-NNNNN.jsonl, summary.json. Run the "
                       "same command again to resume.")
    score.add_argument("--shard-size", type=int, default=10_000,
                       help="Records per shard: the unit of progress, resuming and Ray tasks.")
    score.add_argument("--graph", choices=["auto", "fp32", "int8", "fp16"], default="auto")
    score.add_argument("--threads", type=int, default=None,
                       help="onnxruntime threads, locally (default: all cores).")
    score.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="Run on Ray Data: a local Ray (no value) or a cluster address.")
    score.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1),
                       help="Ray actors, each with one engine (default: one per core).")

    feedback = commands.add_parser("feedback", help="Inspect, export and purge the feedback "
                                                    "store the service writes.")
    feedback_cmds = feedback.add_subparsers(dest="action", required=True)
    stats = feedback_cmds.add_parser("stats", help="Counts by kind, source, model version "
                                                   "and day (UTC).")
    export_feedback = feedback_cmds.add_parser(
        "export", help="Records as the generic JSONL the trainers read (--train-data).")
    export_feedback.add_argument("--out", type=Path, required=True, help="The JSONL file.")
    purge = feedback_cmds.add_parser("purge", help="Erase records older than N days.")
    purge.add_argument("--older-than-days", type=float, required=True)
    for sub in (stats, export_feedback):
        sub.add_argument("--kind", choices=["preference", "moderation", "intent"],
                         required=sub is export_feedback, help="Only this kind.")
        _time_flags(sub)
    stats.add_argument("--json", action="store_true", help="Print the counts as JSON.")
    for sub in (stats, export_feedback, purge):
        _store_flags(sub)

    retrain = commands.add_parser(
        "retrain", help="Continue a stored model on feedback plus replayed original data; "
                        "promote it only if it beats the model in service on held-out "
                        "feedback without losing on the original test sets. Exit 0: "
                        "promoted, 5: refused.")
    retrain.add_argument("task", choices=["reward", "moderation", "intent"])
    retrain.add_argument("--from", dest="tag", required=True,
                         help="The champion: a store tag (name for the latest version).")
    retrain.add_argument("--output", type=Path, required=True,
                         help="Directory for the exported feedback, the challenger, gate.json "
                              "and gate.png.")
    retrain.add_argument("--tolerance", type=float, default=1.0,
                         help="Points the challenger may lose on the original sets pooled.")
    retrain.add_argument("--min-records", type=int, default=20,
                         help="Refuse to re-train on fewer feedback records.")
    retrain.add_argument("--no-promote", action="store_true",
                         help="Judge only: save nothing to the store even if the gate passes.")
    retrain.add_argument("--serve-url", default=None,
                         help="After a promotion, make this running service serve it.")
    _time_flags(retrain)
    _store_flags(retrain)
    _data_dir_flag(retrain)
    _add_config_flags(retrain)

    data = commands.add_parser("data", help="The catalogue of public sets.")
    data_cmds = data.add_subparsers(dest="action", required=True)
    _data_dir_flag(data_cmds.add_parser("list", help="Name, source, license and file per set."))
    _data_dir_flag(data_cmds.add_parser(
        "verify", help="Check every file's sha256 and count valid and skipped records."))
    _data_dir_flag(data_cmds.add_parser(
        "lengths", help="Token lengths per set (MiniLM's tokenizer, special tokens included): "
                        "percentiles, and the share longer than the default model's window."))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from training.commands import HANDLERS

    try:
        return HANDLERS[args.command](args)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError, ImportError, OSError) as exc:
        from training.data.records import DataError

        hint = ""
        if isinstance(exc, DataError) and getattr(args, "skip_invalid", True) is False:
            hint = " (pass --skip-invalid to skip and count such records)"
        print(f"alignserve: error: {exc}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
