"""The ``gplan`` command line: what a user of the GSISR data wants without opening a notebook."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .data import read_gsisr_csv
from .metrics import aggregate, score_sample
from .planners import planner, predict, write_predictions
from .rationalize import rationalize_csv
from .rule_filter import report_csv
from .scaffold import LATENT_RE
from .synth import SynthConfig, ensure_dataset, synthesize


def _read_predictions(path: str | Path, gold_ids: Sequence[str]) -> list[str]:
    outputs = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise SystemExit(f"{path}:{line_no}: not a JSON object ({exc})")
            if not isinstance(rec, dict) or not isinstance(rec.get("output"), str):
                raise SystemExit(f"{path}:{line_no}: needs a string field 'output'")
            k = len(outputs)
            if k < len(gold_ids) and "id" in rec and str(rec["id"]) != gold_ids[k]:
                raise SystemExit(f"{path}:{line_no}: id {rec['id']!r} but gold row {k} has id {gold_ids[k]!r}; "
                                 "predictions must follow the gold file's order")
            outputs.append(rec["output"])
    if len(outputs) != len(gold_ids):
        raise SystemExit(f"{path}: {len(outputs)} predictions for {len(gold_ids)} gold rows")
    return outputs


def score_report(pred_path: str | Path, gold_path: str | Path, seed: int = 0) -> dict[str, Any]:
    """Acc@1, NDCG@3, NES and rule validity of a PRED.jsonl against a gold GSISR CSV."""
    rows = read_gsisr_csv(gold_path).rows
    outputs = _read_predictions(pred_path, [r.id for r in rows])
    latent = any(LATENT_RE.search(o) for o in outputs)  # predictions carry a latent prefix (Sec. 5.1.3)
    return aggregate([score_sample(o, r.plan, latent) for o, r in zip(outputs, rows)], seed=seed).summary()


def _print_table(summary: dict[str, Any]) -> None:
    print(f"n = {summary['n']}")
    for k, (lo, hi) in summary["ci95"].items():
        print(f"{k:<9} {summary[k]:.4f}   95% CI [{lo:.4f}, {hi:.4f}]")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gplan", description="GPlan reproduction tools")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="run the rule filter (Sec. 3.2) over a GSISR CSV's labels")
    p.add_argument("csv")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p = sub.add_parser("score", help="score PRED.jsonl (one {'id','output'} per gold row) against a GSISR CSV")
    p.add_argument("--pred", required=True)
    p.add_argument("--gold", required=True)
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("synth", help="synthesise a dataset (world, teacher, filter, pairs, seeds, manifest)")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--n", type=int, help="accepted samples, train + test")
    size.add_argument("--scale", help="a named scale of configs/scales.yaml (writes data/synth/<scale>/ as notebook 01)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-size", type=int, default=None, help="default: 1%% of n, at least 1")
    p.add_argument("--pair-anchors", type=int, default=None, help="default: 10%% of the train rows")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", help="output folder (required with --n)")
    p.add_argument("--overwrite", action="store_true")
    p = sub.add_parser("predict", help="write PRED.jsonl for a GSISR CSV with a planner or model")
    p.add_argument("--model", required=True, help="teacher | three-rule | majority | a saved student's directory")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--train", help="training CSV (for --model majority)")
    p.add_argument("--overwrite", action="store_true")
    p = sub.add_parser("train", help="train one Table 2/3 run at a named scale (also under `accelerate launch`)")
    p.add_argument("--scale", required=True)
    p.add_argument("--run", required=True, help="direct-cosine | cot-cosine | picd-cosine | picd-constant | picd-calr")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deepspeed", help="DeepSpeed config, e.g. configs/ds_zero3.json")
    p.add_argument("--retrain", action="store_true")
    p = sub.add_parser("rationalize", help="add structured reasoning to JSON-only labels")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "synth":
        if args.scale:
            from .config import load_scale, run_dirs
            cfg = SynthConfig(seed=args.seed, workers=args.workers, **load_scale(args.scale)["synth"])
            manifest = ensure_dataset(cfg, args.out or run_dirs(args.scale).data, overwrite=args.overwrite)
        else:
            if not args.out:
                raise SystemExit("gplan synth --n N needs --out DIR")
            test_size = args.test_size if args.test_size is not None else max(1, args.n // 100)
            anchors = args.pair_anchors if args.pair_anchors is not None else (args.n - test_size) // 10
            cfg = SynthConfig(n=args.n, seed=args.seed, test_size=test_size, pair_anchors=anchors, workers=args.workers)
            manifest = synthesize(cfg, args.out, overwrite=args.overwrite)
        print(json.dumps(manifest["counts"], ensure_ascii=False))
        return 0
    if args.command == "predict":
        rows = read_gsisr_csv(args.data).rows
        if Path(args.model).is_dir():
            from .generation import StudentPlanner  # torch/transformers only when a model is used
            records = StudentPlanner(args.model).generate(rows, args.batch_size, args.max_new_tokens)
        else:
            records = predict(planner(args.model, args.train), rows)
        write_predictions(records, args.out, overwrite=args.overwrite)
        print(f"wrote {len(records)} predictions to {args.out}")
        return 0
    if args.command == "train":
        from .config import load_scale, run_dirs  # torch/transformers only when training
        from .paths import REPO
        from .picd_experiment import RUNS, Experiment
        runs = {r.slug: r for r in RUNS}
        if args.run not in runs:
            raise SystemExit(f"unknown run {args.run!r}; choose one of {sorted(runs)}")
        exp = Experiment(load_scale(args.scale)["picd"], run_dirs(args.scale).data, REPO / "checkpoints" / args.scale,
                         seed=args.seed)
        history = exp.train(runs[args.run], retrain=args.retrain, deepspeed=args.deepspeed)
        print(f"{args.run}: {len([h for h in history if 'loss' in h])} logged steps; saved to {exp.run_dir(runs[args.run])}")
        return 0
    if args.command == "rationalize":
        print(json.dumps(rationalize_csv(args.src, args.dst, overwrite=args.overwrite)))
        return 0

    if args.command == "validate":
        report = report_csv(args.csv)
        if args.json:
            print(json.dumps(report, ensure_ascii=False, indent=1))
        else:
            print(f"{report['n_rows']} rows, {report['n_failed']} fail the filter")
            for rule, n in report["by_rule"].items():
                print(f"  {rule}: {n}")
            for f in report["failures"][:20]:
                v = f["violations"][0]
                print(f"  row {f['row']} id={f['id']}: {v['tier']}/{v['rule']} {v['message']}")
        return 0 if report["n_failed"] == 0 else 1
    summary = score_report(args.pred, args.gold, seed=args.seed)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        _print_table(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
