"""The dataset commands of ``gplan`` (``cli.py`` dispatches to them): ``synth`` from the simulated world or from
real contexts (``--contexts``), ``mix``, and the dataset folders ``validate`` checks. A usage or input mistake is a
``ValueError`` (exit 2, one line naming the file, row and rule where there is one)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..core.rule_filter import report_csv
from .config import SynthConfig
from .synthesize import ensure_dataset, synthesize


def dataset_csv(path: str) -> str:
    """The CSV ``gplan validate`` checks: the file itself, or a dataset folder's train.csv once every file of
    the folder matches its manifest (and its test.csv passes the filter too)."""
    folder = Path(path)
    if not folder.is_dir():
        return path
    from ..core.files import check_manifest
    if not (folder / "manifest.json").is_file():
        raise ValueError(f"{folder}: a dataset folder has a manifest.json (written by gplan synth / gplan mix)")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    check_manifest(folder, tuple(manifest.get("sha256", {})))
    test = report_csv(folder / "test.csv")
    if test["n_failed"]:
        raise ValueError(f"{folder / 'test.csv'}: {test['n_failed']} rows fail the filter (gplan validate {folder / 'test.csv'})")
    print(f"{folder}: every file matches manifest.json; test.csv: {test['n_rows']} rows pass the filter; train.csv:")
    return str(folder / "train.csv")


def _teacher(args, seeds_fallback):
    """The LLM teacher of ``--teacher-url`` (prompted with the reviewed seeds of ``--seeds``, else
    ``seeds_fallback()``), or None: the offline expert."""
    if not args.teacher_url:
        return None
    from ..core.llm_client import ChatClient
    from .llm_teacher import LLMTeacher
    from .review import load_seeds
    if not args.teacher_model:
        raise ValueError("--teacher-url needs --teacher-model")
    seeds = load_seeds(args.seeds) if args.seeds else seeds_fallback()
    return LLMTeacher(ChatClient(args.teacher_url, args.teacher_model, cache_dir=args.cache), seeds)


def _synth_contexts(args) -> dict[str, Any]:
    """``gplan synth --contexts FILE``: label real contexts (``synthesis.contexts.label_contexts``)."""
    from .contexts import label_contexts
    if not args.out:
        raise ValueError("--contexts needs --out DIR")
    if args.labels == "gold" and args.teacher_url and args.perturb == 0:
        raise ValueError("--labels gold --perturb 0 asks the teacher nothing; drop --teacher-url")

    def no_seeds():
        raise ValueError("--teacher-url with --contexts needs --seeds DIR (a dataset folder with reviewed seeds)")
    perturb = 4 if args.perturb is None else args.perturb
    manifest = label_contexts(args.contexts, args.out, args.labels or "teacher", perturb,
                              0.1 if args.test_share is None else args.test_share, args.seed,
                              teacher=_teacher(args, no_seeds), overwrite=args.overwrite)
    report = json.loads((Path(args.out) / "filter_report.json").read_text(encoding="utf-8"))
    print(f"{report['contexts']} contexts of {report['users']} users ({report['test_users']} held out for test.csv); "
          f"{report['rejected']} of {report['candidates']} labels fail the filter")
    for failure in report["failures"][:20]:
        print(f"  {args.contexts}: row {failure['row']} (id={failure['id']}, {failure['what']}): {', '.join(failure['rules'])}")
    if len(report["failures"]) > 20:
        print(f"  ... {len(report['failures']) - 20} more in {Path(args.out) / 'filter_report.json'}")
    return manifest


def cmd_synth(args) -> int:
    if args.contexts:
        print(json.dumps(_synth_contexts(args)["counts"], ensure_ascii=False))
        return 0
    if args.labels or args.perturb is not None or args.test_share is not None:
        raise ValueError("--labels, --perturb and --test-share apply to --contexts")
    if args.scale:
        from ..core.config import output_dirs, replace
        cfg = replace(SynthConfig.from_scale(args.scale, args.seed), workers=args.workers)
        out = args.out or output_dirs(args.scale).data
    else:
        if not args.out:
            raise ValueError("--n N needs --out DIR")
        test_size = args.test_size if args.test_size is not None else max(1, args.n // 100)
        anchors = args.pair_anchors if args.pair_anchors is not None else (args.n - test_size) // 10
        cfg = SynthConfig(n=args.n, seed=args.seed, test_size=test_size, pair_anchors=anchors, workers=args.workers)
        out = args.out
    if args.teacher_url:
        from .synthesize import seed_set, synthesize_llm
        manifest = synthesize_llm(cfg, out, _teacher(args, lambda: seed_set(cfg)), overwrite=args.overwrite)
    elif args.scale:
        manifest = ensure_dataset(cfg, out, overwrite=args.overwrite)
    else:
        manifest = synthesize(cfg, out, overwrite=args.overwrite)
    print(json.dumps(manifest["counts"], ensure_ascii=False))
    return 0


def share(text: str) -> tuple[str, float]:
    """``DIR:SHARE`` of ``gplan mix --from``."""
    folder, sep, share = text.rpartition(":")
    try:
        value = float(share)
    except ValueError:
        value = -1.0
    if not sep or not folder or not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected DIR:SHARE with 0 < SHARE <= 1, got {text!r}")
    return folder, value


def cmd_mix(args) -> int:
    from .contexts import mix_datasets
    manifest = mix_datasets(args.parts, args.n, args.out, args.seed, overwrite=args.overwrite)
    print(json.dumps(manifest["counts"], ensure_ascii=False))
    return 0
