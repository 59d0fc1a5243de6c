"""What each `alignserve` command does, once training/cli.py has parsed it: one handler per
command, each taking the parsed arguments and returning the exit code (HANDLERS)."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from training.config import TASK_PRESETS, TrainConfig


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
                            args.name, args.data_dir, store=not args.no_store,
                            threads=args.threads)


def _import(args: argparse.Namespace) -> int:
    from training.imported import read_source, write_checkpoint

    source = read_source(args.directory, args.task)
    output = args.output or Path("runs") / f"import-{args.name}"
    checkpoint = write_checkpoint(source, args.task, args.name, output, args.max_length,
                                  args.data_dir)
    return _export_to_store(checkpoint, output / "artifact", args.name, args.data_dir,
                            store=not args.no_store, threads=args.threads)


def _export_to_store(checkpoint: Path, output: Path, name: str, data_dir: Path | None,
                     store: bool, threads: int | None = None) -> int:
    from models import store as model_store
    from training.export import export_checkpoint

    exported = export_checkpoint(checkpoint, output, name, data_dir=data_dir, threads=threads)
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
        listed = store.list_stored()
        if not listed:
            print(f"no models in the store at {store.store_location()}: `make models` builds "
                  "the defaults, `alignserve export` saves a trained one")
        for tag, path in listed:
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

    from service import offline, shards

    plan = shards.plan(args.input, args.output, args.shard_size)
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


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": _train, "evaluate": _evaluate, "export": _export, "models": _models, "data": _data,
    "feedback": _feedback, "retrain": _retrain, "score": _score, "import": _import,
    "ensemble": _ensemble}
