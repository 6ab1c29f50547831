"""The ``gplan`` command line: what a user of the GSISR data wants without opening a notebook.

Exit codes: 0 success; 1 the data fails a check (``validate``); 2 a usage or input error, with a
one-line message naming the file, line, row and column where there is one; 3 an internal error (a
bug: ``--debug`` shows its traceback, as it does for input errors). 130 after Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .core.data import RowError, read_gsisr_csv
from .core.metrics import aggregate, score_sample
from .core.paths import REPO
from .core.planner import write_predictions
from .core.rule_filter import report_csv
from .core.scaffold import LATENT_RE
from .evaluation.planners import planner
from .synthesis.commands import cmd_mix, cmd_synth, dataset_csv, share
from .synthesis.rationalize import rationalize_csv
from .training.parallel import close_process_group, launched_rank, training_threads

EXIT_OK, EXIT_CHECK_FAILED, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class InputError(Exception):
    """A user mistake in an argument or an input file (exit 2, one line, no traceback)."""


def _read_predictions(path: str | Path, gold_ids: Sequence[str]) -> list[str]:
    """The outputs of a PRED.jsonl, one record per gold row in the gold file's order; every record
    names its row's ``id`` (positions alone would pair shuffled records with the wrong rows)."""
    outputs = []
    with open(path, encoding="utf-8-sig") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError) as exc:  # RecursionError: a line nested thousands deep
                raise InputError(f"{path}:{line_no}: not a JSON object ({type(exc).__name__}: {str(exc)[:80]})") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("output"), str):
                raise InputError(f"{path}:{line_no}: needs a string field 'output'")
            if "id" not in rec:
                raise InputError(f"{path}:{line_no}: has no 'id'; every record names the id of its gold row "
                                 "(records follow the gold file's order)")
            k = len(outputs)
            if k < len(gold_ids) and str(rec["id"]) != gold_ids[k]:
                raise InputError(f"{path}:{line_no}: id {rec['id']!r} but gold row {k} has id {gold_ids[k]!r}; "
                                 "predictions must follow the gold file's order")
            outputs.append(rec["output"])
    if len(outputs) != len(gold_ids):
        raise InputError(f"{path}: {len(outputs)} predictions for {len(gold_ids)} gold rows")
    return outputs


def _gold_rows(path: str | Path, labels: bool = True):
    """The rows of a gold GSISR CSV; a file without any is an input error (its scores would be NaN)."""
    rows = read_gsisr_csv(path, labels=labels).rows
    if not rows:
        raise InputError(f"{path}: no rows to score")
    return rows


def score_report(pred_path: str | Path, gold_path: str | Path, seed: int = 0) -> dict[str, Any]:
    """Acc@1, NDCG@3, NES and rule validity (strict filter) of a PRED.jsonl against a gold GSISR CSV."""
    rows = _gold_rows(gold_path)
    outputs = _read_predictions(pred_path, [r.id for r in rows])
    latent = any(LATENT_RE.search(o) for o in outputs)  # predictions carry a latent prefix (Sec. 5.1.3)
    return aggregate([score_sample(o, r.plan, latent) for o, r in zip(outputs, rows)], seed=seed).summary()


def _print_table(summary: dict[str, Any]) -> None:
    print(f"n = {summary['n']}")
    for k, (lo, hi) in summary["ci95"].items():
        print(f"{k:<9} {summary[k]:.4f}   95% CI [{lo:.4f}, {hi:.4f}]")


def _client(url: str, model: str | None, what: str, **kw):
    """A chat client for ``--*-url``/``--*-model``; the key comes from $OPENAI_API_KEY only."""
    from .core.llm_client import ChatClient
    if not model:
        raise InputError(f"--{what}-url needs --{what}-model")
    return ChatClient(url, model, **kw)


def cmd_validate(args) -> int:
    report = report_csv(dataset_csv(args.csv))
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=1))
    else:
        print(f"{report['n_rows']} rows, {report['n_failed']} fail the filter")
        for rule, n in report["by_rule"].items():
            print(f"  {rule}: {n}")
        for f in report["failures"][:20]:
            v = f["violations"][0]
            print(f"  row {f['row']} id={f['id']}: {v['tier']}/{v['rule']} {v['message']}")
        if report["repeated_ids"]:
            print(f"  note: {len(report['repeated_ids'])} ids appear on more than one row (ids are user ids)")
    return EXIT_OK if report["n_failed"] == 0 else EXIT_CHECK_FAILED


def cmd_score(args) -> int:
    summary = score_report(args.pred, args.gold, seed=args.seed)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        _print_table(summary)
    return EXIT_OK


def cmd_judge(args) -> int:
    from .core.parsing import parse_output
    from .evaluation.judge import LLMJudge, OfflineJudge, summarise
    rows = _gold_rows(args.gold, labels=False)
    plans = [parse_output(o).plan for o in _read_predictions(args.pred, [r.id for r in rows])]
    if args.llm_url:
        judge = LLMJudge(_client(args.llm_url, args.llm_model, "llm", cache_dir=args.cache))
    else:
        judge = OfflineJudge()
    verdicts = judge.judge(rows, plans)
    summary = {"judge": "llm" if args.llm_url else "offline", "n": len(verdicts), **summarise(verdicts)}
    if args.json:
        summary["rows"] = [{"id": r.id, **v.as_dict()} for r, v in zip(rows, verdicts)]
        print(json.dumps(summary, ensure_ascii=False, indent=1))
    else:
        print(f"{summary['judge']} judge, n = {summary['n']}: " +
              ", ".join(f"{k} {summary[k]:.2f}" for k in ("flow", "logic", "st", "overall")))
    return EXIT_OK


def cmd_predict(args) -> int:
    rows = read_gsisr_csv(args.data, labels=False).rows
    records = planner(args.model, args.train, args.batch_size, args.max_new_tokens).predict(rows)
    write_predictions(records, args.out, overwrite=args.overwrite)
    print(f"wrote {len(records)} predictions to {args.out}")
    return EXIT_OK


PICD_METHODS = ("direct-cosine", "cot-cosine", "picd-cosine", "picd-constant", "picd-calr")
DPO_METHODS = ("dpo-vanilla", "dpo-sc", "dpo-sc-no-anchor", "dpo-sc-no-gap", "dpo-sc-no-centre")
TRAIN_METHODS = (*PICD_METHODS, *DPO_METHODS, "dpo-reference", "backbone")


def _train_overrides(items: Sequence[str] | None) -> dict[str, Any]:
    """``--set train.<setting>=<value>`` (values read as JSON where they parse: exact floats) as a dict."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("train.") or not key[len("train."):]:
            raise InputError(f"--set {item!r}: expected train.<setting>=<value>, e.g. --set train.lr=0.0004")
        try:
            out[key[len("train."):]] = json.loads(value)
        except ValueError:
            out[key[len("train."):]] = value
    return out


def _require_fit(scale: str, model, deepspeed: str | None) -> None:
    """Refuse, before loading, a full fine-tuning that cannot fit this node's GPUs with its strategy."""
    import torch
    if model.kind != "pretrained" or not torch.cuda.is_available():
        return
    from .studies.cost_model import check_strategy
    from .training.launch import DeviceError
    gpu_gb = torch.cuda.get_device_properties(0).total_memory / 1e9
    problem = check_strategy(scale, (launched_rank() or (0, 1))[1], deepspeed, gpu_gb)
    if problem:
        raise DeviceError(problem)


def cmd_train(args) -> int:
    from .picd.config import PICDConfig
    from .training.launch import require_device
    if args.run not in TRAIN_METHODS:
        raise InputError(f"unknown method {args.run!r}; choose one of {', '.join(TRAIN_METHODS)}")
    model = PICDConfig.from_scale(args.scale).model
    require_device(model, args.scale)  # seconds, before anything downloads
    _require_fit(args.scale, model, args.deepspeed)
    overrides, picd, dpo = _train_overrides(args.set), args.run in PICD_METHODS, args.run.startswith("dpo-")
    for flag, value, ok in (("--init-from", args.init_from, picd), ("--base", args.base, dpo), ("--tag", args.tag, dpo),
                            ("--set", overrides, args.run != "backbone" and args.run != "dpo-reference"),
                            ("--data", args.data, args.run != "backbone"),
                            ("--out", args.out, args.run not in ("backbone", "dpo-reference"))):
        if value and not ok:
            raise InputError(f"{flag} does not apply to --method {args.run}")
    with training_threads():  # on a CPU one thread: the weights a notebook's launch trains
        if picd:
            from .picd.experiment import PICDExperiment, variant
            exp = PICDExperiment(args.scale, args.seed, train_overrides=overrides or None, work=args.work,
                                 init_from=args.init_from, data=args.data)
            out = Path(args.out) if args.out else exp.run_dir(variant(args.run))
            if args.data:
                print(f"{args.run}: {len(exp.train_rows)} training rows of {exp.data_dir / 'train.csv'}; runs in {exp.work}")
            history = exp.train(variant(args.run), retrain=args.retrain, deepspeed=args.deepspeed, out=out)
        elif dpo:
            from .sc_dpo.experiment import SCDPOExperiment
            dexp = SCDPOExperiment(args.scale, args.seed, base=args.base, work=args.work, data=args.data)
            if args.run == "dpo-reference":
                dexp.reference()
                out, history = dexp.reference_cache, []
            else:
                name = args.run.removeprefix("dpo-")
                dexp.weights(name)  # an unknown variant is an error before anything trains
                out = Path(args.out) if args.out else dexp.run_dir(name, args.tag)
                history = dexp.train(name, args.retrain, args.tag, args.deepspeed, out=out, **overrides)
        else:
            from .studies.regimes import pretrain_job
            out = pretrain_job(args.scale, args.seed, args.deepspeed)
            history = json.loads((out / "log_history.json").read_text())
    close_process_group()
    if (launched_rank() or (0,))[0] == 0:
        print(f"{args.run}: {len([h for h in history if 'loss' in h])} logged steps; saved to {out}"
              + (" (log_history.json: epoch, learning_rate, stage per logged step)" if picd else ""))
    return EXIT_OK


def cmd_rationalize(args) -> int:
    print(json.dumps(rationalize_csv(args.src, args.dst, overwrite=args.overwrite)))
    return EXIT_OK


def cmd_publish(args) -> int:
    from .core.config import PUBLISHED, publish
    changed = publish(args.scale, tuple(args.only or PUBLISHED))
    print("\n".join(f"updated {p.relative_to(REPO)}" for p in changed) or "nothing changed: the committed results match")
    return EXIT_OK


def _at_least(lo: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``lo`` (a usage error, exit 2, otherwise)."""
    def check(text: str) -> int:
        value = int(text)
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {value}")
        return value
    return check


_nonnegative, _positive = _at_least(0), _at_least(1)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback of an error")
    parser = argparse.ArgumentParser(prog="gplan", description="GPlan reproduction tools")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, fn: Callable[[Any], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, parents=[common])
        p.set_defaults(handler=fn)
        return p

    p = command("validate", cmd_validate, "run the rule filter (Sec. 3.2) over a GSISR CSV's labels; exit 1 if any fails")
    p.add_argument("csv")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p = command("score", cmd_score, "score PRED.jsonl (one {'id','output'} per gold row) against a GSISR CSV")
    p.add_argument("--pred", required=True)
    p.add_argument("--gold", required=True)
    p.add_argument("--seed", type=_nonnegative, default=0, help="bootstrap seed")
    p.add_argument("--json", action="store_true")
    p = command("judge", cmd_judge, "Flow / Logic / ST (Sec. 5.3) of PRED.jsonl: the offline judge, or an LLM judge")
    p.add_argument("--pred", required=True)
    p.add_argument("--gold", required=True, help="the GSISR CSV whose contexts the predictions plan for")
    p.add_argument("--llm-url", help="an OpenAI-compatible server (key from $OPENAI_API_KEY)")
    p.add_argument("--llm-model")
    p.add_argument("--cache", help="a folder for cached judge replies")
    p.add_argument("--json", action="store_true", help="also every row's scores")
    p = command("synth", cmd_synth, "synthesise a dataset (world or real contexts, teacher, filter, pairs, seeds, manifest)")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--n", type=_positive, help="accepted samples, train + test")
    size.add_argument("--scale", help="a named scale of configs/scales.yaml (writes data/synth/<scale>/ as notebook 01)")
    size.add_argument("--contexts", help="label the contexts of this GSISR CSV (real rows) instead of the world's")
    p.add_argument("--labels", choices=("teacher", "gold"), help="with --contexts: the teacher's labels (default), or "
                                                                  "the rows' own plans with reasoning written (gold)")
    p.add_argument("--perturb", type=_nonnegative, default=None,
                   help="with --contexts: counterfactual perturbations per context, re-planned by the teacher, as extra "
                        "training rows and preference pairs (0-5, default 4)")
    p.add_argument("--test-share", type=float, default=None,
                   help="with --contexts: share of users (by id) held out as test.csv (default 0.1)")
    p.add_argument("--seed", type=_nonnegative, default=0)
    p.add_argument("--test-size", type=_nonnegative, default=None, help="default: 1%% of n, at least 1")
    p.add_argument("--pair-anchors", type=_nonnegative, default=None, help="default: 10%% of the train rows")
    p.add_argument("--workers", type=_positive, default=2)
    p.add_argument("--out", help="output folder (required with --n)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--teacher-url", help="label with an LLM teacher on this OpenAI-compatible server (key from "
                                         "$OPENAI_API_KEY); default: the offline expert teacher")
    p.add_argument("--teacher-model")
    p.add_argument("--seeds", help="a dataset folder whose reviewed seeds prompt the LLM teacher")
    p.add_argument("--cache", help="a folder for cached LLM replies")
    p = command("mix", cmd_mix, "a dataset mixing dataset folders at stated shares (e.g. world and real contexts)")
    p.add_argument("--from", dest="parts", action="append", type=share, required=True, metavar="DIR:SHARE",
                   help="a dataset folder and its share of the training rows (repeat; shares sum to 1; the first "
                        "gives test.csv)")
    p.add_argument("--n", type=_positive, required=True, help="training rows")
    p.add_argument("--seed", type=_nonnegative, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    p = command("predict", cmd_predict, "write PRED.jsonl for a GSISR CSV with a planner or model")
    p.add_argument("--model", required=True, help="teacher | three-rule | majority | a saved student's directory")
    p.add_argument("--batch-size", type=_positive, default=16)
    p.add_argument("--max-new-tokens", type=_positive, default=512)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--train", help="training CSV (for --model majority)")
    p.add_argument("--overwrite", action="store_true")
    p = command("train", cmd_train, "one training at a named scale: a Table 2/3 run, a DPO variant, the DPO reference "
                                    "pass or the regime study's backbone (under torchrun / accelerate too)")
    p.add_argument("--scale", required=True)
    p.add_argument("--run", "--method", dest="run", required=True,
                   help=f"{' | '.join(TRAIN_METHODS)} (under torchrun, write --method: torchrun reads --run as its own "
                        "--run-path)")
    p.add_argument("--seed", type=_nonnegative, default=0)
    p.add_argument("--deepspeed", help="DeepSpeed config, e.g. configs/ds_zero3.json")
    p.add_argument("--out", help="the run's folder (default: checkpoints/<scale>/<method>)")
    p.add_argument("--work", help="the experiment's folder (default: checkpoints/<scale>[/seed-<s>])")
    p.add_argument("--init-from", help="PICD: start from this saved model (with its tokenizer and init_key.txt)")
    p.add_argument("--base", help="DPO: the PICD student to start from (default: checkpoints/<scale>[/seed-<s>]/picd-calr)")
    p.add_argument("--tag", default="", help="DPO: a suffix for a run kept apart (dpo-<variant>-<tag>)")
    p.add_argument("--data", help="train on this dataset folder (gplan synth / gplan mix output) instead of "
                                  "data/synth/<scale>/ (runs go to checkpoints/<scale>/[seed-<s>/]data-<digest>/ "
                                  "unless --work or --out says otherwise)")
    p.add_argument("--set", action="append", metavar="train.SETTING=VALUE",
                   help="change one of the scale's training settings (repeatable), e.g. train.lr=0.0004")
    p.add_argument("--retrain", action="store_true")
    p = command("publish", cmd_publish, "copy runs/<scale>/results and figures over the committed results/<scale>/ and "
                                        "figures/<scale>/, and the executed notebooks, cleaned, into docs/notebooks/<scale>/")
    p.add_argument("--scale", required=True)
    p.add_argument("--only", nargs="+", choices=("results", "figures", "notebooks"),
                   help="publish only these (default: all three)")
    p = command("rationalize", cmd_rationalize, "add structured reasoning to JSON-only labels")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--overwrite", action="store_true")
    return parser


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)


def _who(command: str) -> str:
    """``gplan <command>``, with the rank under torchrun / accelerate (whose logs interleave the processes)."""
    launched = launched_rank()
    return f"gplan {command} (rank {launched[0]} of {launched[1]})" if launched else f"gplan {command}"


def _sigterm(signum, frame):
    raise SystemExit(EXIT_INTERRUPTED)  # unwinds like Ctrl-C: worker pools are terminated on the way out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # usage errors: argparse prints them and exits 2
    from .core.llm_client import LLMError
    previous = signal.signal(signal.SIGTERM, _sigterm) if __name__ == "__main__" or argv is None else None
    try:
        return args.handler(args)
    except (InputError, RowError, ValueError, OSError, LLMError) as exc:
        if args.debug:
            raise
        print(f"{_who(args.command)}: {_describe(exc)}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: say so in one line; --debug shows where
        if args.debug:
            raise
        print(f"{_who(args.command)}: internal error ({type(exc).__name__}: {exc}); "
              "rerun with --debug for the traceback", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
