"""Sim-to-real (paper Sec. 3.2, 4.1.1, 4.2.1, 5.4): which training data makes a student that plans well for
*real* users it never saw.

The released rows are split **by user id** into ``folds`` folds (an id is a user: no user is in two folds).
For each fold, the other folds' rows are the only real rows anything is fitted or trained on, and these
students train at the scale (one launched ``gplan train`` each, the same method):

- ``world``: the scale's own simulated dataset, as today (trained once; it saw no released row);
- ``calibrated world``: the world with its input distributions fitted to the training users
  (``synthesis.calibration.fit_world``);
- ``real, teacher labels``: the training users' contexts labelled by the offline teacher, with ``perturb``
  counterfactual perturbations each (``synthesis.contexts.label_contexts``);
- ``real, gold plans``: the same contexts with their own plans (reasoning written for them);
- ``mixture``: real gold plans and the calibrated world at ``mix_real_share``.

Each is scored on the fold's held-out users beside the offline teacher and the three-rule floor. Caveat that
no split removes: the offline teacher's rules and the built-in world's marginals were written by people who
had read the calibration rows, so they are not untouched by the held-out users (the students' training is).
A learning curve (Acc@1 on held-out users vs training rows) on the first fold says whether data limits it.
Results: ``results/<scale>/sim_to_real.json`` and ``figures/<scale>/sim_to_real.png`` (``make sim-to-real``).
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.config import ScaleSection
from ..core.data import GsisrRow, load_released, write_gsisr_csv
from ..core.files import write_json
from ..core.metrics import bootstrap_ci, score_sample
from ..core.paths import OUTPUTS
from ..core.provenance import provenance
from ..training.checkpoints import checkpoint
from ..training.launch import Launch, train_argv
from ..synthesis.calibration import user_folds
from ..training.parallel import Job, run_jobs
from .stats import holm, mcnemar_exact, sign_flip_test

SOURCES = ("world", "calibrated world", "real, teacher labels", "real, gold plans", "mixture")
REFERENCES = ("offline teacher", "three-rule floor")
METRICS = ("acc1", "ndcg3", "nes", "validity")
SLUG = {"world": "world", "calibrated world": "calibrated-world", "real, teacher labels": "real-teacher",
        "real, gold plans": "real-gold", "mixture": "mixture"}


@dataclass(frozen=True, kw_only=True)
class SimToRealConfig(ScaleSection):
    """configs/scales.yaml ``sim_to_real``."""

    SECTION = "sim_to_real"

    folds: int                   # user-grouped folds of the released rows
    method: str = "picd-calr"    # what every student trains with (a `gplan train` method)
    perturb: int = 4             # counterfactual perturbations per real context
    mix_real_share: float = 0.5  # share of real (gold) rows in the mixture; the rest calibrated world
    world_rows: int = 1100       # rows of each calibrated world (train + world_test)
    world_test: int = 100
    curve: list[int] | None = None  # training rows of the learning curve (fold 0, real gold plans)
    rows: int | None = None      # first released rows used (None: all)
    seed: int = 0                # fold assignment, perturbations and training seed

    def __post_init__(self):
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")
        if not 0 < self.mix_real_share < 1:
            raise ValueError(f"mix_real_share must be in (0, 1), got {self.mix_real_share}")


def study_dir(scale: str) -> Path:
    return OUTPUTS / scale / "sim_to_real"


def _fold_work(scale: str, fold: int, name: str) -> Path:
    return checkpoint(scale, "sim_to_real") / f"fold-{fold}" / name


def prepare_fold(scale: str, cfg: SimToRealConfig, fold: int, train_rows: Sequence[GsisrRow]) -> dict[str, Path]:
    """The fold's datasets (built, or reused when their config is unchanged): source name -> dataset folder."""
    from dataclasses import replace as dc_replace

    from ..picd.config import PICDConfig
    from ..synthesis.calibration import fit_world, world_json
    from ..synthesis.config import SynthConfig
    from ..synthesis.contexts import ensure_contexts
    from ..synthesis.synthesize import ensure_dataset
    base = study_dir(scale) / f"fold-{fold}"
    base.mkdir(parents=True, exist_ok=True)
    users_csv = base / "train_users.csv"
    write_gsisr_csv(train_rows, users_csv, overwrite=True)
    synth = SynthConfig.from_scale(scale, cfg.seed)
    world = dc_replace(synth, n=cfg.world_rows, test_size=cfg.world_test, pair_anchors=min(synth.pair_anchors, cfg.world_rows // 2),
                       n_seeds=min(synth.n_seeds, 20), world=world_json(fit_world(train_rows)), workers=1)
    out = {"calibrated world": base / "calibrated-world"}
    ensure_dataset(world, out["calibrated world"], overwrite=True)
    for labels, name in (("teacher", "real, teacher labels"), ("gold", "real, gold plans")):
        out[name] = base / SLUG[name]
        ensure_contexts(users_csv, out[name], labels, cfg.perturb, 0.0, cfg.seed, overwrite=True)
    n_train = PICDConfig.from_scale(scale).n_train
    parts = [(out["real, gold plans"], cfg.mix_real_share), (out["calibrated world"], 1 - cfg.mix_real_share)]
    n_real = min(round(cfg.mix_real_share * n_train), _rows(out["real, gold plans"]))
    n_mix = min(n_train, math.floor(n_real / cfg.mix_real_share))  # the real part is the scarce one
    out["mixture"] = _mixed(parts, n_mix, base / "mixture", cfg.seed)
    if fold == 0:
        for n in cfg.curve or ():
            out[f"curve {n}"] = _mixed([(out["real, gold plans"], 1.0)], min(n, _rows(out["real, gold plans"])),
                                       base / f"curve-{n}", cfg.seed)
    return out


def _rows(folder: Path) -> int:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["counts"]["train"]


def _mixed(parts: list[tuple[Path, float]], n: int, folder: Path, seed: int) -> Path:
    from ..synthesis.contexts import mix_datasets
    mix_datasets(parts, n, folder, seed, overwrite=True)  # reused when its config is unchanged
    return folder


def launches(scale: str, cfg: SimToRealConfig, datasets: dict[int, dict[str, Path]]) -> list[Launch]:
    """One ``gplan train`` per (fold, dataset); the world's student is the scale's own run (one launch)."""
    out = [Launch("world", scale, train_argv(scale, 0, cfg.method))]
    for fold, sets in datasets.items():
        for name, folder in sets.items():
            out.append(Launch(f"fold {fold}: {name}", scale,
                              train_argv(scale, cfg.seed, cfg.method, data=folder,
                                         work=_fold_work(scale, fold, SLUG.get(name, name.replace(" ", "-"))))))
    return out


def run_dir(scale: str, cfg: SimToRealConfig, fold: int, name: str) -> Path:
    if name == "world":
        return checkpoint(scale, cfg.method)
    return _fold_work(scale, fold, SLUG.get(name, name.replace(" ", "-"))) / cfg.method


def score_rows(planner, rows: Sequence[GsisrRow]) -> dict[str, list[float]]:
    """Per-row Acc@1, NDCG@3, NES and strict validity of a planner's outputs."""
    per = [score_sample(o["output"], r.plan) for o, r in zip(planner.predict(rows), rows)]
    return {m: [s[m] for s in per] for m in METRICS}


COMPARISONS = tuple((a, "world") for a in SOURCES[1:]) + (
    ("real, gold plans", "real, teacher labels"), ("mixture", "real, gold plans"), ("mixture", "calibrated world"),
) + tuple((a, r) for a in SOURCES for r in REFERENCES)


def summarise(per_row: dict[str, Any], curve: dict[str, Any], gaps: dict[str, Any], cfg: SimToRealConfig,
              scale: str) -> dict[str, Any]:
    """sim_to_real.json: per planner the means and 95% row-bootstrap intervals over all held-out rows and per
    fold; paired tests (exact McNemar on Acc@1, sign-flip on NES) per comparison, Holm-adjusted over all of them."""
    names = [*SOURCES, *REFERENCES]
    table = {}
    for n in names:
        entry = {}
        for m in METRICS:
            vals = per_row[n][m]
            lo, hi = bootstrap_ci(vals, seed=cfg.seed)
            entry[m] = float(np.mean(vals))
            entry[f"{m}_ci95"] = [float(lo), float(hi)]
        entry["acc1_by_fold"] = [float(np.mean([v for v, f in zip(per_row[n]["acc1"], per_row["fold"]) if f == k]))
                                 for k in range(cfg.folds)]
        table[n] = entry
    raw, tests = {}, {}
    for a, b in COMPARISONS:
        key = f"{a} vs {b}"
        mc = mcnemar_exact(per_row[a]["acc1"], per_row[b]["acc1"])
        tests[key] = {"acc1_diff": table[a]["acc1"] - table[b]["acc1"], "acc1_a_only": mc["a_only"],
                      "acc1_b_only": mc["b_only"], "nes_diff": table[a]["nes"] - table[b]["nes"]}
        raw[f"{key} / acc1"] = mc["p_value"]
        raw[f"{key} / nes"] = sign_flip_test(per_row[a]["nes"], per_row[b]["nes"], seed=cfg.seed)
    adjusted = holm(raw)
    for key, t in tests.items():
        for m in ("acc1", "nes"):
            t[f"{m}_p"], t[f"{m}_p_holm"] = raw[f"{key} / {m}"], adjusted[f"{key} / {m}"]
    best = max(SOURCES, key=lambda n: table[n]["acc1"])
    return {
        "scale": scale, "method": cfg.method, "folds": cfg.folds, "n_rows": len(per_row["fold"]),
        "n_users": len(set(per_row["user"])), "perturb": cfg.perturb, "mix_real_share": cfg.mix_real_share,
        "scores": table, "paired": tests, "best_source": best,
        "goal": {"teacher_acc1": table["offline teacher"]["acc1"], "best_acc1": table[best]["acc1"],
                 "within_5_points_of_teacher": table[best]["acc1"] >= table["offline teacher"]["acc1"] - 0.05,
                 "above_three_rule_floor": table[best]["acc1"] > table["three-rule floor"]["acc1"]},
        "learning_curve": curve, "input_gaps": gaps, "provenance": provenance(),
        "per_row": {"row": per_row["row"], "fold": per_row["fold"],
                    **{n: {m: per_row[n][m] for m in METRICS} for n in names}},
        "tests": ("rows pooled over folds (each held-out row once; one training seed per fold, so training "
                  "randomness is not in the test): exact McNemar on Acc@1, sign-flip permutation (10,000) on NES; "
                  f"Holm over all {len(raw)} tests"),
    }


def _released(cfg: SimToRealConfig) -> list[GsisrRow]:
    found = load_released()
    if not found:
        raise FileNotFoundError("no released rows: put the GSISR CSV in data/gsisr/ (or ../shared/gsisr/calibration.csv)")
    return found[0][: cfg.rows]


def score_fold(scale: str, fold: int) -> dict[str, Any]:
    """Every planner on one fold's held-out users: per-row outcomes (row indices into the released file, never
    the rows), and on fold 0 the learning curve's runs too. Stored as runs/<scale>/sim_to_real/fold-<k>/scores.json."""
    from ..core.floors import ThreeRulePlan
    from ..picd.config import PICDConfig
    from ..synthesis.teacher import ExpertTeacher
    from ..training.generation import StudentPlanner
    cfg = SimToRealConfig.from_scale(scale)
    rows = _released(cfg)
    held = user_folds(rows, cfg.folds, cfg.seed)[fold]
    test = [(i, r) for i, r in enumerate(rows) if r.id in held]
    test_rows = [r for _, r in test]
    ev = PICDConfig.from_scale(scale).eval
    planners = {n: StudentPlanner(run_dir(scale, cfg, fold, n), batch_size=ev.batch_size,
                                  max_new_tokens=ev.max_new_tokens) for n in SOURCES}
    planners |= {"offline teacher": ExpertTeacher(), "three-rule floor": ThreeRulePlan()}
    if fold == 0:
        planners |= {f"curve {n}": StudentPlanner(run_dir(scale, cfg, 0, f"curve {n}"), batch_size=ev.batch_size,
                                                  max_new_tokens=ev.max_new_tokens) for n in cfg.curve or ()}
    out = {"fold": fold, "row": [i for i, _ in test], "user": [r.id for r in test_rows],
           "scores": {n: score_rows(p, test_rows) for n, p in planners.items()}}
    write_json(study_dir(scale) / f"fold-{fold}" / "scores.json", out)
    return out


def collect(scale: str, cfg: SimToRealConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The folds' stored scores as one per-row table, and the learning curve (fold 0)."""
    per_row: dict[str, Any] = {"row": [], "fold": [], "user": [],
                               **{n: {m: [] for m in METRICS} for n in (*SOURCES, *REFERENCES)}}
    curve: dict[str, Any] = {"rows": [], "acc1": [], "acc1_ci95": []}
    for k in range(cfg.folds):
        fold = json.loads((study_dir(scale) / f"fold-{k}" / "scores.json").read_text(encoding="utf-8"))
        per_row["row"] += fold["row"]
        per_row["fold"] += [k] * len(fold["row"])
        per_row["user"] += fold["user"]
        for n in (*SOURCES, *REFERENCES):
            for m in METRICS:
                per_row[n][m] += fold["scores"][n][m]
        if k == 0:
            for n in cfg.curve or ():
                acc = fold["scores"][f"curve {n}"]["acc1"]
                curve["rows"].append(n)
                curve["acc1"].append(float(np.mean(acc)))
                curve["acc1_ci95"].append([float(x) for x in bootstrap_ci(acc, seed=cfg.seed)])
    return per_row, curve


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Sim-to-real over user-grouped folds (results/<scale>/sim_to_real.json)")
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--jobs", type=int, default=None, help="runs trained at once (default: one per core)")
    ap.add_argument("--summarise-only", action="store_true",
                    help="rewrite the summary and figure from the folds' stored scores (train and score nothing)")
    args = ap.parse_args(argv)
    from ..core.reporting import plot_sim_to_real, write_study
    from ..picd.config import PICDConfig
    from ..synthesis.calibration import fold_gaps
    cfg = SimToRealConfig.from_scale(args.scale)
    rows = _released(cfg)
    folds = user_folds(rows, cfg.folds, cfg.seed)
    if not args.summarise_only:
        datasets = {k: prepare_fold(args.scale, cfg, k, [r for r in rows if r.id not in held]) for k, held in enumerate(folds)}
        trainings = launches(args.scale, cfg, datasets)
        scoring = [Job(f"fold {k}: scores", score_fold, (args.scale, k),
                       ("world", *(j.name for j in trainings if j.name.startswith(f"fold {k}:")))) for k in range(cfg.folds)]
        run_jobs([*trainings, *scoring], args.jobs, desc="sim-to-real")
    per_row, curve = collect(args.scale, cfg)
    n_train = PICDConfig.from_scale(args.scale).n_train
    curve["full"] = {"rows": min(n_train, _rows(study_dir(args.scale) / "fold-0" / SLUG["real, gold plans"])),
                     "acc1": float(np.mean([a for a, f in zip(per_row["real, gold plans"]["acc1"], per_row["fold"]) if f == 0]))}
    summary = summarise(per_row, curve, fold_gaps(rows, folds, n_sim=cfg.world_rows, seed=cfg.seed), cfg, args.scale)
    write_study(args.scale, "sim_to_real", summary, plot_sim_to_real)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
