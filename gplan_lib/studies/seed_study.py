"""Every run of Tables 3 and 4 (paper Sec. 5.4) over several training seeds, with paired tests.

A training seed sets the initial weights and the data order; the data (the scale's synthetic
dataset) and every hyperparameter stay fixed. Seed 0 is the run the notebooks train and reuse
(checkpoints/<scale>/); seed s > 0 trains under checkpoints/<scale>/seed-<s>/. Per-row scores of each
seed are kept under runs/<scale>/seeds/ so that a study can be resumed or extended seed by seed.

Every run trains as a launched ``gplan train`` and is scored in a one-thread worker process, side by side
on a CPU (``training.launch``, ``training.parallel``): seed 0's runs are the notebooks' runs bit for bit,
whichever trains them first.

The same rows recur in every seed, so a comparison is tested with the design's units (``studies.stats``): a
paired t-test over seeds and a hierarchical bootstrap (seeds, then rows keeping their seeds), Holm-corrected
over every test. The per-row outcomes of every run and seed are written beside seeds.json (``ROWS_FILE``),
so that any test can be recomputed (``read_rows``).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.config import published_dirs
from ..core.files import atomic_write, write_json
from ..core.paths import OUTPUTS
from ..core.provenance import provenance
from ..core.evidence import plot_seeds
from ..core.reporting import SEED_METRICS, write_study
from ..training.launch import Launch, train_argv
from ..training.parallel import Job, run_jobs
from .stats import compare, holm

#: Runs in table order: Table 3's five SFT/PICD runs, then Table 4's two post-training variants.
PICD_RUNS = ("Direct-SFT", "CoT-SFT", "PICD (cosine)", "PICD (constant)", "PICD (CALR)")
DPO_RUNS = ("+ Vanilla DPO", "+ SC-DPO")
#: (A, B): is A different from B? The paper's claims, each as one comparison: the three schedules pairwise, CALR
#: against both SFT baselines, and every pair of Table 4's three models.
SCHEDULES = (("PICD (CALR)", "PICD (cosine)"), ("PICD (CALR)", "PICD (constant)"), ("PICD (cosine)", "PICD (constant)"))
COMPARISONS = (*SCHEDULES, ("PICD (CALR)", "Direct-SFT"), ("PICD (CALR)", "CoT-SFT"),
               ("+ Vanilla DPO", "PICD (CALR)"), ("+ SC-DPO", "PICD (CALR)"), ("+ SC-DPO", "+ Vanilla DPO"))
#: Metric -> the comparisons tested on it: Acc@1 and NES everywhere; Latent-Valid between the schedules (Table 3's
#: claim: CALR and constant keep the scaffold, cosine loses it).
TESTED = {"acc1": COMPARISONS, "nes": COMPARISONS, "latent_valid": SCHEDULES}
#: The per-row, per-seed outcomes beside seeds.json (results/<scale>/).
ROWS_FILE = "seeds_rows.csv.gz"


def seed_file(scale: str, seed: int) -> Path:
    return OUTPUTS / scale / "seeds" / f"seed-{seed}.json"


def seed_key(scale: str, seed: int) -> str:
    """What a stored seed result depends on: the scale's synthesis, PICD and SC-DPO settings, the
    dataset and the seed (not, say, the regime study's settings)."""
    from ..core.config import output_dirs, section
    from ..training.checkpoints import config_key
    manifest = output_dirs(scale).data / "manifest.json"
    cfg = {k: section(scale, k) for k in ("synth", "picd", "sc_dpo")}
    return config_key({"cfg": cfg, "seed": seed, "data": manifest.read_text() if manifest.is_file() else None,
                       "metrics": SEED_METRICS, "row_ids": True})  # files without row ids or these metrics are redone


def stored(scale: str, seed: int) -> dict[str, Any] | None:
    """A seed's stored result if it was made with the current config and data."""
    path = seed_file(scale, seed)
    result = json.loads(path.read_text()) if path.is_file() else None
    return result if result and result.get("key") == seed_key(scale, seed) else None


def jobs(scale: str, seeds: Sequence[int]) -> list[Job | Launch]:
    """Per seed: the five PICD runs (longest first), the reference log-probs and the two DPO runs from its PICD-CALR
    (each a ``gplan train`` launch), then its scores (``run_seed``, a one-thread worker)."""
    from ..picd.experiment import LONGEST_FIRST, variant
    from ..sc_dpo.experiment import DPO_VARIANTS, dpo_jobs
    out: list[Job | Launch] = []
    for s in seeds:  # seed by seed, so that a study cut short leaves whole seeds stored
        picd = [Launch(f"seed {s}: {variant(slug).name}", scale, train_argv(scale, s, slug)) for slug in LONGEST_FIRST]
        dpo = dpo_jobs(scale, s, DPO_VARIANTS, prefix=f"seed {s}: ", after=(f"seed {s}: PICD (CALR)",))
        out += [*picd, *dpo, Job(f"seed {s}: scores", run_seed, (scale, s), tuple(j.name for j in picd + dpo))]
    return out


def run_seed(scale: str, seed: int) -> dict[str, Any]:
    """Train (or reuse) all seven runs for one seed and score each on the held-out synthetic rows;
    returns and stores per-row metrics and, for the PICD-CALR base and both DPO variants, the
    likelihood-based context sensitivity on held-out pairs."""
    from ..picd.experiment import VARIANTS, PICDExperiment, variant
    from ..sc_dpo.experiment import DPO_VARIANTS, SCDPOExperiment

    exp = PICDExperiment(scale, seed)
    out: dict[str, Any] = {"seed": seed, "scale": scale, "key": seed_key(scale, seed), "n_rows": len(exp.test_rows),
                           "row_ids": [r.id for r in exp.test_rows],
                           "runs": {}, "sensitivity": {}, "provenance": provenance()}

    def keep(name: str, scores) -> None:
        out["runs"][name] = {m: [s[m] for s in scores.per_sample] for m in SEED_METRICS}

    for v in VARIANTS:
        exp.train(v)
        keep(v.name, exp.evaluate(v)[0])
    base = exp.run_dir(variant("PICD (CALR)"))
    dpo = SCDPOExperiment(scale, seed, base=base)
    out["sensitivity"]["PICD (CALR)"] = dpo.sensitivity(base, generate=False)
    for name, v in DPO_VARIANTS.items():
        dpo.train(v)
        keep(name, dpo.evaluate(dpo.run_dir(v), name)[0])
        out["sensitivity"][name] = dpo.sensitivity(dpo.run_dir(v), generate=False)
    path = seed_file(scale, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, out)
    return out


def outcomes(per_seed: Sequence[dict[str, Any]]) -> tuple[list[int], dict[str, dict[str, np.ndarray]]]:
    """The seeds in order and, per run and metric, the per-row outcomes as an array seeds x rows."""
    per_seed = sorted(per_seed, key=lambda s: s["seed"])
    names = [n for n in (*PICD_RUNS, *DPO_RUNS) if all(n in s["runs"] for s in per_seed)]
    return [s["seed"] for s in per_seed], {
        n: {m: np.array([s["runs"][n][m] for s in per_seed], float) for m in SEED_METRICS} for n in names}


def paired_tests(per_row: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    """For each comparison and tested metric, the seed-level paired t-test and the hierarchical bootstrap
    (``studies.stats.compare``), with Holm-adjusted p-values over every test run here."""
    out: dict[str, Any] = {}
    raw: dict[str, float] = {}
    for metric, comparisons in TESTED.items():
        for a, b in comparisons:
            if a in per_row and b in per_row:
                key = f"{a} vs {b} / {metric}"
                out[key] = compare(per_row[a][metric], per_row[b][metric])
                raw[f"{key} / seed t"] = out[key]["seed_t"]["p"]
                raw[f"{key} / bootstrap"] = out[key]["bootstrap"]["p"]
    adjusted = holm(raw)
    for key, v in out.items():
        v["seed_t"]["p_holm"] = adjusted[f"{key} / seed t"]
        v["bootstrap"]["p_holm"] = adjusted[f"{key} / bootstrap"]
    return out


def summarise(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The seeds.json document: per run, the seeds and each seed's mean metrics; per comparison and metric, the
    tests of ``paired_tests``; the context sensitivity (with the held-out chosen plans' mean log-probability, whose
    fall is the drift of Sec. 4.2) and each seed's provenance."""
    per_seed = sorted(per_seed, key=lambda s: s["seed"])
    seeds, per_row = outcomes(per_seed)
    runs = {n: {"seeds": seeds, **{m: [float(x) for x in v[m].mean(axis=1)] for m in SEED_METRICS}}
            for n, v in per_row.items()}
    sensitivity = {n: {k: [s["sensitivity"][n][k] for s in per_seed] for k in
                       ("double_difference_positive", "double_difference_mean", "reward_accuracy", "logp_chosen_mean")}
                   for n in ("PICD (CALR)", *DPO_RUNS) if all(n in s.get("sensitivity", {}) for s in per_seed)}
    paired = paired_tests(per_row)
    return {"scale": per_seed[0]["scale"], "n_rows_per_seed": per_seed[0]["n_rows"], "runs": runs, "paired": paired,
            "sensitivity": sensitivity, "provenance": {str(s["seed"]): s.get("provenance") for s in per_seed},
            "per_row_file": ROWS_FILE,
            "tests": (f"per comparison and metric, on per-row outcomes (seeds x rows): a paired t-test over the "
                      f"{len(seeds)} seeds' mean differences, and a hierarchical bootstrap (10,000 resamples of "
                      f"seeds, then rows with all their seeds); Holm over all {2 * len(paired)} tests")}


def write_rows(per_seed: Sequence[dict[str, Any]], path: Path) -> Path:
    """Every run's per-row, per-seed outcomes as one gzipped CSV (run, seed, row id, the metrics), byte-stable."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(("run", "seed", "row", *SEED_METRICS))
    for s in sorted(per_seed, key=lambda s: s["seed"]):
        for name, scores in s["runs"].items():
            out.writerows((name, s["seed"], row_id, *(f"{scores[m][i]:.4g}" for m in SEED_METRICS))
                          for i, row_id in enumerate(s["row_ids"]))
    return atomic_write(path, gzip.compress(buf.getvalue().encode(), mtime=0))


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The per-seed runs of a file from ``write_rows`` (``runs`` and ``row_ids`` per seed), to recompute a test."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        table = list(csv.DictReader(fh))
    by_seed: dict[int, dict[str, Any]] = {}
    for rec in table:
        s = by_seed.setdefault(int(rec["seed"]), {"seed": int(rec["seed"]), "runs": {}, "row_ids": []})
        run = s["runs"].setdefault(rec["run"], {m: [] for m in SEED_METRICS})
        if len(s["runs"]) == 1:
            s["row_ids"].append(rec["row"])
        for m in SEED_METRICS:
            run[m].append(float(rec[m]))
    return [by_seed[k] for k in sorted(by_seed)]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Tables 3-4 over several training seeds (results/<scale>/seeds.json)")
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--jobs", type=int, default=None,
                    help="runs trained at once, each in its own one-thread process (default: one per core)")
    args = ap.parse_args(argv)
    todo = [s for s in args.seeds if stored(args.scale, s) is None]
    from ..picd.experiment import PICDExperiment
    for s in todo:  # each seed's tokenizer and initial weights, built here once before the workers read them
        PICDExperiment(args.scale, s)
    run_jobs(jobs(args.scale, todo), args.jobs, desc="seed study")
    per_seed = [stored(args.scale, s) for s in args.seeds]
    write_study(args.scale, "seeds", summarise(per_seed), plot_seeds)
    print(f"wrote {write_rows(per_seed, published_dirs(args.scale).results / ROWS_FILE)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
