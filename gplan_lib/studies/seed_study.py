"""Every run of Tables 3 and 4 (paper Sec. 5.4) over several training seeds, with paired tests.

A training seed sets the initial weights and the data order; the data (the scale's synthetic
dataset) and every hyperparameter stay fixed. Seed 0 is the run the notebooks train and reuse
(checkpoints/<scale>/); seed s > 0 trains under checkpoints/<scale>/seed-<s>/. Per-row scores of each
seed are kept under runs/<scale>/seeds/ so that a study can be resumed or extended seed by seed.

Every run trains as a launched ``gplan train`` and is scored in a one-thread worker process, side by side
on a CPU (``training.launch``, ``training.parallel``): seed 0's runs are the notebooks' runs bit for bit,
whichever trains them first.

Comparisons pool per-row outcomes over seeds (row r of seed s under run A against the same row and
seed under run B): an exact McNemar test on Acc@1 and a paired sign-flip permutation test on NES.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.files import write_json
from ..core.paths import OUTPUTS
from ..core.provenance import provenance
from ..core.reporting import SEED_METRICS, plot_seeds, write_study
from ..training.launch import Launch, train_argv
from ..training.parallel import Job, run_jobs

#: Runs in table order: Table 3's five SFT/PICD runs, then Table 4's two post-training variants.
PICD_RUNS = ("Direct-SFT", "CoT-SFT", "PICD (cosine)", "PICD (constant)", "PICD (CALR)")
DPO_RUNS = ("+ Vanilla DPO", "+ SC-DPO")
#: (A, B): is A different from B? The paper's claims, each as one comparison.
COMPARISONS = (("PICD (CALR)", "PICD (cosine)"), ("PICD (CALR)", "PICD (constant)"), ("PICD (CALR)", "Direct-SFT"),
               ("PICD (CALR)", "CoT-SFT"), ("+ SC-DPO", "PICD (CALR)"), ("+ SC-DPO", "+ Vanilla DPO"))


def seed_file(scale: str, seed: int) -> Path:
    return OUTPUTS / scale / "seeds" / f"seed-{seed}.json"


def seed_key(scale: str, seed: int) -> str:
    """What a stored seed result depends on: the scale's synthesis, PICD and SC-DPO settings, the
    dataset and the seed (not, say, the regime study's settings)."""
    from ..core.config import output_dirs, section
    from ..training.checkpoints import config_key
    manifest = output_dirs(scale).data / "manifest.json"
    cfg = {k: section(scale, k) for k in ("synth", "picd", "sc_dpo")}
    return config_key({"cfg": cfg, "seed": seed, "data": manifest.read_text() if manifest.is_file() else None})


def stored(scale: str, seed: int) -> dict[str, Any] | None:
    """A seed's stored result if it was made with the current config and data."""
    path = seed_file(scale, seed)
    result = json.loads(path.read_text()) if path.is_file() else None
    return result if result and result.get("key") == seed_key(scale, seed) else None


def jobs(scale: str, seeds: Sequence[int]) -> list[Job | Launch]:
    """Per seed: the five PICD runs, the reference log-probs and the two DPO runs from its PICD-CALR (each a
    ``gplan train`` launch), then its scores (``run_seed``, a one-thread worker); longest runs first."""
    from ..picd.experiment import LONGEST_FIRST, variant
    from ..sc_dpo.experiment import DPO_VARIANTS, dpo_jobs
    picd = [Launch(f"seed {s}: {variant(slug).name}", scale, train_argv(scale, s, slug)) for slug in LONGEST_FIRST
            for s in seeds]
    dpo = [j for s in seeds for j in dpo_jobs(scale, s, DPO_VARIANTS, prefix=f"seed {s}: ",
                                              after=(f"seed {s}: PICD (CALR)",))]
    scores = [Job(f"seed {s}: scores", run_seed, (scale, s), tuple(j.name for j in picd + dpo
                                                                  if j.name.startswith(f"seed {s}:")))
              for s in seeds]
    return picd + dpo + scores


def run_seed(scale: str, seed: int) -> dict[str, Any]:
    """Train (or reuse) all seven runs for one seed and score each on the held-out synthetic rows;
    returns and stores per-row metrics and, for the PICD-CALR base and both DPO variants, the
    likelihood-based context sensitivity on held-out pairs."""
    from ..picd.experiment import VARIANTS, PICDExperiment, variant
    from ..sc_dpo.experiment import DPO_VARIANTS, SCDPOExperiment

    exp = PICDExperiment(scale, seed)
    out: dict[str, Any] = {"seed": seed, "scale": scale, "key": seed_key(scale, seed), "n_rows": len(exp.test_rows),
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


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Exact two-sided McNemar test on paired 0/1 outcomes: a binomial test on the discordant pairs."""
    a_only = int(sum(1 for x, y in zip(a, b, strict=True) if x > y))
    b_only = int(sum(1 for x, y in zip(a, b, strict=True) if y > x))
    n = a_only + b_only
    tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1)) / 2 ** n if n else 1.0
    return {"a_only": a_only, "b_only": b_only, "p_value": min(1.0, 2 * tail)}


def sign_flip_test(a: Sequence[float], b: Sequence[float], n_perm: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value of the mean paired difference under random sign flips."""
    d = np.asarray(a, float) - np.asarray(b, float)
    signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(n_perm, d.size))
    null = np.abs((signs * d).mean(axis=1))
    return float((1 + np.sum(null >= abs(d.mean()) - 1e-12)) / (n_perm + 1))


def summarise(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The seeds.json document: per run, the seeds and each seed's mean metrics; per comparison, the
    paired tests on per-row outcomes pooled over seeds."""
    per_seed = sorted(per_seed, key=lambda s: s["seed"])
    names = [n for n in (*PICD_RUNS, *DPO_RUNS) if all(n in s["runs"] for s in per_seed)]
    runs = {n: {"seeds": [s["seed"] for s in per_seed],
                **{m: [float(np.mean(s["runs"][n][m])) for s in per_seed] for m in SEED_METRICS}} for n in names}
    paired = {}
    for a, b in COMPARISONS:
        if a in runs and b in runs:
            pooled = {n: {m: [v for s in per_seed for v in s["runs"][n][m]] for m in SEED_METRICS} for n in (a, b)}
            paired[f"{a} vs {b}"] = {
                "n": len(pooled[a]["acc1"]), "acc1_diff": float(np.mean(pooled[a]["acc1"]) - np.mean(pooled[b]["acc1"])),
                "mcnemar_acc1": mcnemar_exact(pooled[a]["acc1"], pooled[b]["acc1"]),
                "nes_diff": float(np.mean(pooled[a]["nes"]) - np.mean(pooled[b]["nes"])),
                "sign_flip_nes_p": sign_flip_test(pooled[a]["nes"], pooled[b]["nes"])}
    sensitivity = {n: {k: [s["sensitivity"][n][k] for s in per_seed] for k in
                       ("double_difference_positive", "double_difference_mean", "reward_accuracy")}
                   for n in ("PICD (CALR)", *DPO_RUNS) if all(n in s.get("sensitivity", {}) for s in per_seed)}
    return {"scale": per_seed[0]["scale"], "n_rows_per_seed": per_seed[0]["n_rows"], "runs": runs, "paired": paired,
            "sensitivity": sensitivity, "provenance": {str(s["seed"]): s.get("provenance") for s in per_seed},
            "tests": "paired per row and seed: exact McNemar on Acc@1, sign-flip permutation (10,000) on NES"}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Tables 3-4 over several training seeds (results/<scale>/seeds.json)")
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=None,
                    help="runs trained at once, each in its own one-thread process (default: one per core)")
    args = ap.parse_args(argv)
    todo = [s for s in args.seeds if stored(args.scale, s) is None]
    from ..picd.experiment import PICDExperiment
    for s in todo:  # each seed's tokenizer and initial weights, built here once before the workers read them
        PICDExperiment(args.scale, s)
    run_jobs(jobs(args.scale, todo), args.jobs, desc="seed study")
    write_study(args.scale, "seeds", summarise([stored(args.scale, s) for s in args.seeds]), plot_seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
