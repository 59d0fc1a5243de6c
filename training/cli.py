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
import json
import os
import sys
import time
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


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Every TrainConfig field becomes a flag overriding the preset; help comes from the field."""
    group = parser.add_argument_group("training settings (override the preset)")
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
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
    _add_config_flags(parser)


def _artifact_flags(parser: argparse.ArgumentParser, output_help: str) -> None:
    """What every command that builds an artifact for the store takes."""
    parser.add_argument("--name", required=True,
                        help="Store name (lowercase letters, digits, '.', '_', '-').")
    parser.add_argument("--output", type=Path, default=None, help=output_help)
    parser.add_argument("--no-store", action="store_true",
                        help="Build and check the artifact but do not save it to the store.")
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


def _train(args: argparse.Namespace) -> int:
    from training.intent import train_intent
    from training.moderation import train_moderation
    from training.reward import train_reward

    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    config = TASK_PRESETS[args.task][args.preset].with_overrides(**overrides)
    common = {"name": args.name, "preset": args.preset, "resume": args.resume,
              "train_data": args.train_data, "skip_invalid": args.skip_invalid}
    if args.task == "reward" and args.ensemble > 1:
        return _train_ensemble(args, config, common)
    if args.task == "reward":
        result = train_reward(config, args.output, args.data_dir, **common)
    elif args.task == "moderation":
        result = train_moderation(config, args.output, args.data_dir, **common)
    else:
        result = train_intent(config, args.output, args.dataset, args.data_dir, **common)
    return 0 if result else 3


def _train_ensemble(args: argparse.Namespace, config: TrainConfig, common: dict[str, Any]
                    ) -> int:
    from training.ensemble import build_ensemble
    from training.reward import train_reward

    members = []
    for k in range(args.ensemble):
        seed = config.seed + k
        print(f"ensemble member {k + 1} of {args.ensemble} (seed {seed})", flush=True)
        member = args.output / f"member-{k}"
        done = (member / "model" / "manifest.json").exists()
        if not done and train_reward(config.with_overrides(seed=seed), member, args.data_dir,
                                     **common) is None:
            return 3
        members.append(member / "model")
    build_ensemble(members, args.output, args.name, args.ensemble_rule, args.ensemble_penalty,
                   args.data_dir, config.eval_batch_tokens)
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    from training.ensemble import build_ensemble

    build_ensemble(args.members, args.output, args.name, args.ensemble_rule,
                   args.ensemble_penalty, args.data_dir, args.max_tokens)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training import evaluate
    from training.report import summary_table
    from training.reward import COLUMNS

    skipped: dict[str, dict[str, int]] = {}
    if args.task == "reward":
        manifest, metrics, skipped = evaluate.evaluate_reward_model(
            args.model, args.data, args.data_dir, args.sets, args.skip_invalid, args.max_tokens)
        head = {"model": manifest.name, "version": manifest.version,
                "temperature": manifest.temperature}
        columns = list(COLUMNS)
    else:
        run = (evaluate.evaluate_moderation_model if args.task == "moderation"
               else evaluate.evaluate_intent_model)
        metrics = run(args.model, args.data, args.data_dir, args.skip_invalid, args.max_tokens)
        head = {"model": str(args.model)}
        columns = [*sorted({k for values in metrics.values() for k in values} - {"n"}), "n"]
    if args.json:
        print(json.dumps({**head, "eval": metrics, "skipped": skipped}, indent=2))
        return 0
    print(summary_table(metrics, columns))
    for name, counts in skipped.items():
        if counts:
            print(f"{name}: skipped {counts}")
    return 0


def _export(args: argparse.Namespace) -> int:
    return _export_to_store(args.checkpoint, args.output or args.checkpoint.parent / "artifact",
                            args.name, args.data_dir, store=not args.no_store)


def _import(args: argparse.Namespace) -> int:
    from training.imported import read_source, write_checkpoint

    source = read_source(args.directory, args.task)
    output = args.output or Path("runs") / f"import-{args.name}"
    checkpoint = write_checkpoint(source, args.task, args.name, output, args.max_length,
                                  args.data_dir)
    return _export_to_store(checkpoint, output / "artifact", args.name, args.data_dir,
                            store=not args.no_store)


def _export_to_store(checkpoint: Path, output: Path, name: str, data_dir: Path | None,
                     store: bool) -> int:
    from models import store as model_store
    from models.artifact import TOKENIZER_FILE
    from models.inputs import PairEncoder
    from models.manifest import Manifest
    from training.checks import validation_check
    from training.export import export_checkpoint

    manifest = Manifest.load(checkpoint)
    encoder = PairEncoder.from_file(checkpoint / TOKENIZER_FILE, manifest.input)
    check = validation_check(manifest, encoder, data_dir)
    exported = export_checkpoint(checkpoint, output, name, check)
    exported.save(output)
    int8 = exported.quantisation["int8"]
    print(f"artifact {exported.name}:{exported.version} in {output}")
    print("  parity max |onnx - torch|: " + ", ".join(
        f"{k} {v:.2e}" for k, v in exported.parity_max_diff.items()))
    checked = int(float(int8.get("examples_checked", 0)))
    examples = int(float(int8.get("examples", 0)))
    surely = "passes" if int8["accepted"] == "yes" else "keeps too few"
    stopped = (f"; stopped after {checked:,} of {examples:,} examples: int8 surely {surely}"
               if checked < examples else "")
    agreed_on = (f" of {int(float(int8['agreed_on'])):,}" if "agreed_on" in int8 else "")
    agreement = (f", {int8['agreement_of']} {float(int8['agreement']):.1%}{agreed_on} (min "
                 f"{float(int8['min_agreement']):.0%})" if "agreement" in int8 else "")
    print(f"  int8 {'kept' if int8['accepted'] == 'yes' else 'REJECTED'}: {int8['metric']} "
          f"fp32 {float(int8['fp32']):.4f}, int8 {float(int8['int8']):.4f}; drop "
          f"{float(int8['drop_points']):.2f} points, 95% interval "
          f"[{float(int8['drop_low_points']):.2f}, {float(int8['drop_high_points']):.2f}] "
          f"(upper end max {int8['max_drop_points']}){agreement}{stopped}")
    if store:
        print(f"  saved to the store as {model_store.save(output)} "
              f"({model_store.store_location()})")
    return 0


def _models(args: argparse.Namespace) -> int:
    from models import store

    if args.action == "list":
        for tag, path in store.list_stored():
            try:
                manifest = store.verify(path)
                state = f"{manifest.task.value:<10} files ok  " + " ".join(
                    sorted(n for n in manifest.files if n.endswith(".onnx")))
            except store.ArtifactError as exc:
                state = f"BROKEN: {exc}"
            print(f"{tag:<40} {state}")
        return 0
    if args.action == "promote":
        return _promote(args.tag, args.url)
    if args.action == "build-defaults":
        from training.first_run import build_defaults

        return build_defaults(args.runs, args.data_dir)
    stored = store.get(args.tag)
    if args.action == "show":
        print(stored.manifest.model_dump_json(indent=2))
    else:
        print(f"{stored.tag}: {len(stored.manifest.files)} files match their sha256")
    return 0


def _promote(tag: str, url: str) -> int:
    """Ask a running service to serve `tag` in the role of its task."""
    import os

    import httpx

    from models import store
    from models.manifest import Task

    stored = store.get(tag)
    role = {Task.reward: "reward", Task.multilabel: "moderation",
            Task.multiclass: "intent"}[stored.manifest.task]
    key = os.environ.get("ALIGNSERVE_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        answer = httpx.post(f"{url.rstrip('/')}/v1/admin/models/{role}", json={"tag": stored.tag},
                            headers=headers, timeout=600)
    except httpx.TransportError as exc:
        raise RuntimeError(f"cannot reach the service at {url}: {exc}") from None
    if answer.status_code != 200:
        raise RuntimeError(f"the service refused ({answer.status_code}): {answer.text}")
    done = answer.json()
    print(f"{role}: now serving {done['current']} (was {done['previous']}; loaded and warmed "
          f"in {done['load_s']:.1f} s)")
    return 0


def _score(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from service import offline

    plan = offline.plan(args.input, args.output, args.shard_size)
    args.output.mkdir(parents=True, exist_ok=True)
    pending = plan.pending()
    print(f"{args.input}: {plan.shards} shards of up to {plan.size:,} records; "
          f"{plan.shards - len(pending)} already scored in {args.output}, {len(pending)} to go")
    started = time.perf_counter()
    with tqdm(total=len(pending), unit="shard", desc="score", dynamic_ncols=True) as bar:
        def progress(result: offline.ShardResult) -> None:
            bar.update(1)
            bar.set_postfix(scored=result.scored, rejected=result.rejected)

        if args.ray:
            address = None if args.ray == "local" else args.ray
            results = offline.run_ray(args.model, plan, args.workers, args.graph, address,
                                      progress)
        else:
            results = offline.run_local(args.model, plan, args.graph, args.threads, progress)
    mode = f"ray ({args.workers} workers)" if args.ray else "local"
    summary = offline.summary(plan, args.model, results, time.perf_counter() - started, mode)
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    if summary["rejected_total"]:
        print(f"{summary['rejected_total']} records could not be scored: see "
              f"{args.output}/rejected-*.jsonl (line or row, and why)")
    return 0


def _feedback(args: argparse.Namespace) -> int:
    from feedback.records import export_line
    from feedback.store import open_configured

    feedback = open_configured(args.feedback_db, args.feedback_dsn)
    try:
        if args.action == "purge":
            print(f"erased {feedback.purge(args.older_than_days)} records older than "
                  f"{args.older_than_days:g} days from {feedback.describe()}")
        elif args.action == "export":
            count = 0
            with args.out.open("w") as out:
                for stored in feedback.select(args.kind, args.since, args.until):
                    out.write(json.dumps(export_line(stored.record), ensure_ascii=False) + "\n")
                    count += 1
            print(f"{count} {args.kind} records from {feedback.describe()} -> {args.out}")
        else:
            counts = feedback.stats(args.kind, args.since, args.until)
            if args.json:
                print(json.dumps([c.__dict__ for c in counts], indent=2))
            else:
                _print_counts(counts, feedback.describe())
    finally:
        feedback.close()
    return 0


def _print_counts(counts: list[Any], where: str) -> None:
    from collections import Counter

    print(f"{sum(c.records for c in counts)} records in {where}")
    for title, key in (("kind", lambda c: c.kind), ("source", lambda c: c.source or "-"),
                       ("model version", lambda c: c.model_version or "-"),
                       ("day", lambda c: c.day)):
        totals: Counter[str] = Counter()
        for c in counts:
            totals[key(c)] += c.records
        print(f"by {title}: " + ", ".join(f"{k} {n}" for k, n in sorted(totals.items())))


def _retrain(args: argparse.Namespace) -> int:
    from feedback.store import open_configured
    from training.retrain import retrain

    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    feedback = open_configured(args.feedback_db, args.feedback_dsn)
    try:
        result = retrain(args.task, args.tag, args.output, feedback, args.data_dir, args.since,
                         args.until, overrides, args.tolerance, not args.no_promote,
                         args.min_records)
    finally:
        feedback.close()
    if result.tag and args.serve_url:
        _promote(result.tag, args.serve_url)
    return 0 if result.decision.promoted else 5


def _data(args: argparse.Namespace) -> int:
    """Every catalogued set: the preference sets, then the labelled (classifier) sets."""
    from training.data import catalogue, labelled_sets

    if args.action == "lengths":
        return _lengths(args.data_dir)

    for name, entry in catalogue.PREFERENCE_SETS.items():
        if args.action == "list":
            print(f"{name:<36} {entry.role:<10} {entry.license:<11} {entry.source}")
        else:
            loaded = catalogue.load(name, args.data_dir)
            print(f"{name:<36} sha256 ok  {len(loaded.pairs):>6} pairs  "
                  f"skipped {dict(loaded.skipped)}")
    for name, labelled in labelled_sets.LABELLED_SETS.items():
        if args.action == "list":
            print(f"{name:<36} {labelled.kind:<10} {labelled.license:<11} {labelled.source}")
        else:
            _, splits = labelled_sets.load_labelled(name, args.data_dir)
            counts = {k: len(v.examples) for k, v in splits.items()}
            skipped = {k: n for v in splits.values() for k, n in v.skipped.items()}
            print(f"{name:<36} sha256 ok  {sum(counts.values()):>6} texts  {counts}  "
                  f"skipped {skipped}")
    return 0


def _lengths(data_dir: Path | None) -> int:
    """Per set, tokens per input as the default models read it: a (prompt, response) pair for
    the reward model (the chosen reply), a text for the classifiers."""
    import numpy as np
    from tokenizers import Tokenizer

    from models.inputs import render_prompt
    from training.data import catalogue, labelled_sets
    from training.modeling import resolve_backbone

    tokenizer = Tokenizer.from_file(str(resolve_backbone("minilm") / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    windows = {k: TASK_PRESETS[k]["default"].max_length for k in ("reward", "moderation",
                                                                   "intent")}

    def row(name: str, kind: str, lengths: list[int], window: int) -> None:
        values = np.asarray(lengths)
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        print(f"{name:<34} {kind:<10} {len(values):>7,} {p50:>6.0f} {p90:>6.0f} {p99:>6.0f} "
              f"{values.max():>7,} {window:>7} {(values > window).mean():>8.1%}")

    print(f"{'set':<34} {'kind':<10} {'inputs':>7} {'p50':>6} {'p90':>6} {'p99':>6} "
          f"{'max':>7} {'window':>7} {'longer':>8}")
    for name in catalogue.PREFERENCE_SETS:
        pairs = catalogue.load(name, data_dir).pairs
        encoded = tokenizer.encode_batch([(render_prompt(p.prompt), p.chosen) for p in pairs])
        row(name, "preference", [len(e.ids) for e in encoded], windows["reward"])
    for name, entry in labelled_sets.LABELLED_SETS.items():
        _, splits = labelled_sets.load_labelled(name, data_dir)
        texts = [e.text for part in splits.values() for e in part.examples]
        kind = "intent" if entry.kind == "intent" else "moderation"
        row(name, entry.kind, [len(e.ids) for e in tokenizer.encode_batch(texts)], windows[kind])
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train": _train, "evaluate": _evaluate, "export": _export, "models": _models,
                "data": _data, "feedback": _feedback, "retrain": _retrain, "score": _score,
                "import": _import, "ensemble": _ensemble}
    from training.distributed import WorkerDone

    try:
        return handlers[args.command](args)
    except WorkerDone:  # a data-parallel worker whose training is done (training/distributed.py)
        return 0
    except (FileNotFoundError, ValueError, KeyError, RuntimeError, ImportError, OSError) as exc:
        from training.data.records import DataError

        hint = ""
        if isinstance(exc, DataError) and getattr(args, "skip_invalid", True) is False:
            hint = " (pass --skip-invalid to skip and count such records)"
        print(f"alignserve: error: {exc}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
