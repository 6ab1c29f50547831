"""The evidence behind the claims of Tables 2-4: the committed seed study and regime grid (results/<scale>/seeds.json,
regimes.json) as tables and figures, and each of the paper's claims with our verdict. Notebooks 02-04 read them
without retraining."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import paper
from .plotting import save_figure
from .reporting import METRIC_NAMES, SEED_METRICS


def seed_table(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per run: each metric as mean ± sd over seeds (for display with pandas)."""
    return [{"planner": n, "seeds": len(r["seeds"]),
             **{m: f"{np.mean(r[m]):.3f} ± {np.std(r[m], ddof=1) if len(r[m]) > 1 else 0:.3f}" for m in SEED_METRICS}}
            for n, r in summary["runs"].items()]


def paired_table(summary: dict[str, Any], among: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per tested comparison and metric of a seed study (both runs in ``among`` when given): the mean
    difference with the 95% intervals and Holm-adjusted p-values of the seed-level paired t-test and of the
    hierarchical bootstrap (``studies.seed_study``)."""
    rows = []
    for key, v in summary["paired"].items():
        pair, metric = key.rsplit(" / ", 1)
        if among is not None and not set(pair.split(" vs ")) <= set(among):
            continue
        t, boot = v["seed_t"], v["bootstrap"]
        rows.append({"comparison": pair, "metric": METRIC_NAMES.get(metric, metric), "Δ (A - B)": round(t["diff"], 3),
                     "seeds A > B": f"{sum(d > 0 for d in v['per_seed_diff'])} of {len(v['per_seed_diff'])}",
                     "95% CI over seeds": f"[{t['ci95'][0]:.3f}, {t['ci95'][1]:.3f}]",
                     "seed-level p (Holm)": round(t["p_holm"], 4),
                     "95% CI, bootstrap": f"[{boot['ci95'][0]:.3f}, {boot['ci95'][1]:.3f}]",
                     "bootstrap p (Holm)": round(boot["p_holm"], 4)})
    return rows


#: Our runs of Tables 2-4 and the paper's row each stands for.
PAPER_ROWS = {"Direct-SFT": paper.TABLE2["Direct-SFT"], "CoT-SFT": paper.TABLE2["CoT-SFT"],
              "PICD (cosine)": paper.TABLE3["Cosine-LR"], "PICD (constant)": paper.TABLE3["Constant-LR"],
              "PICD (CALR)": paper.TABLE3["CALR"], "+ Vanilla DPO": paper.TABLE4["+ Vanilla DPO"],
              "+ SC-DPO": paper.TABLE4["+ SC-DPO"]}


def paper_claims(summary: dict[str, Any], alpha: float = 0.05) -> list[dict[str, Any]]:
    """Each comparison of the seed study as a claim of the paper (its sign in Tables 2-4) with our verdict: *holds*
    when both of our tests reject at ``alpha`` after Holm with the paper's sign, *reversed* when both reject with the
    other sign; *does not hold* also when the paper's difference lies outside our interval over seeds at level
    1 - alpha / (number of claims) (t interval of the per-seed differences, Bonferroni over the claims); *cannot
    tell* otherwise (and, where the paper reports no difference, *consistent* unless both tests find one)."""
    from scipy import stats as sps
    claims = []
    for key, v in summary["paired"].items():
        pair, metric = key.rsplit(" / ", 1)
        a, b = pair.split(" vs ")
        if metric in PAPER_ROWS[a] and metric in PAPER_ROWS[b]:
            claims.append((pair, metric, a, b, v))
    rows = []
    for pair, metric, a, b, v in claims:
        pa, pb = PAPER_ROWS[a][metric], PAPER_ROWS[b][metric]
        t, boot, d = v["seed_t"], v["bootstrap"], np.asarray(v["per_seed_diff"], float)
        half = sps.t.ppf(1 - alpha / len(claims) / 2, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
        lo, hi = d.mean() - half, d.mean() + half
        both = t["p_holm"] < alpha and boot["p_holm"] < alpha
        if pa == pb:
            verdict = "does not hold: a difference" if both else "consistent: no difference found"
        elif both:
            verdict = "holds" if np.sign(t["diff"]) == np.sign(pa - pb) else "does not hold: reversed"
        else:
            verdict = ("does not hold: the paper's difference is outside our interval" if not lo <= pa - pb <= hi
                       else "cannot tell at this scale")
        word = "equal to" if pa == pb else "above" if pa > pb else "below"
        rows.append({"paper's claim": f"{a} {word} {b} on {METRIC_NAMES.get(metric, metric)} ({pa:g} vs {pb:g})",
                     "ours: Δ": f"{t['diff']:+.3f}", f"interval over seeds ({1 - alpha / len(claims):.4g})":
                     f"[{lo:+.3f}, {hi:+.3f}]", "seeds A > B": f"{int(np.sum(d > 0))} of {d.size}",
                     "p, Holm (seed t / bootstrap)": f"{t['p_holm']:.3g} / {boot['p_holm']:.3g}", "verdict": verdict})
    return rows


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows (dicts with the same keys) as a GitHub markdown table."""
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows])


def _spread(values: Sequence[float | None], fmt: str = ".3f") -> str:
    v = np.asarray([x for x in values if x is not None], float)
    return "-" if v.size == 0 else f"{v.mean():{fmt}} ({v.min():{fmt}} to {v.max():{fmt}})"


def docs_tables(summary: dict[str, Any]) -> dict[str, str]:
    """The seed study as docs/results.md shows it (a test checks that the page carries these tables verbatim):
    each run over seeds beside the paper, every paired test, the paper's claims with verdicts, and the context
    sensitivity of the DPO runs."""
    ms = lambda v: f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f}"
    runs = [{"run": n, "Acc@1 mean ± sd (min-max)": f"{ms(r['acc1'])} ({min(r['acc1']):.3f}-{max(r['acc1']):.3f})",
             **{METRIC_NAMES[m]: ms(r[m]) for m in ("ndcg3", "nes", "validity", "latent_valid")},
             "paper Acc@1 / NDCG@3 / NES / LV": " / ".join(f"{PAPER_ROWS[n][m]:g}" for m in
                                                          ("acc1", "ndcg3", "nes", "latent_valid") if m in PAPER_ROWS[n])}
            for n, r in summary["runs"].items()]
    paired = []
    for key, v in summary["paired"].items():
        pair, metric = key.rsplit(" / ", 1)
        t, b = v["seed_t"], v["bootstrap"]
        paired.append({"comparison (A vs B)": pair, "metric": METRIC_NAMES.get(metric, metric),
                       "Δ [95% CI over seeds]": f"{t['diff']:+.3f} [{t['ci95'][0]:+.3f}, {t['ci95'][1]:+.3f}]",
                       "seeds A > B": f"{sum(d > 0 for d in v['per_seed_diff'])} of {len(v['per_seed_diff'])}",
                       "seed t p (Holm)": f"{t['p']:.3g} ({t['p_holm']:.3g})",
                       "bootstrap Δ [95% CI]": f"{b['diff']:+.3f} [{b['ci95'][0]:+.3f}, {b['ci95'][1]:+.3f}]",
                       "bootstrap p (Holm)": f"{b['p']:.3g} ({b['p_holm']:.3g})"})
    sens = [{"model": n, "DD > 0: mean (min to max over seeds)": _spread(v["double_difference_positive"]),
             "DD mean, nats": _spread(v["double_difference_mean"], ".2f"),
             "reward accuracy": _spread(v["reward_accuracy"]),
             "held-out log p(y+), nats": _spread(v.get("logp_chosen_mean", []), ".2f")}
            for n, v in summary["sensitivity"].items()]
    return {"runs": markdown(runs), "paired": markdown(paired), "claims": markdown(paper_claims(summary)),
            "sensitivity": markdown(sens)}


#: The columns of the regime grid's tables: metric -> header.
REGIME_PICD = {"acc1": "Acc@1", "nes": "NES", "validity": "validity", "latent_valid": "Latent-Valid",
               "final_train_loss_json": "final L_json", "double_difference_positive": "DD > 0"}
REGIME_DPO = {"acc1": "Acc@1", "nes": "NES", "validity": "validity", "latent_valid": "Latent-Valid",
              "double_difference_positive": "DD > 0", "double_difference_mean": "DD mean",
              "reward_accuracy": "reward acc.", "grad_share_above_clip": "steps above clip"}


def _mean_sd(stats: Mapping[str, Any]) -> str:
    if stats["mean"] is None:
        return "-"
    return f"{stats['mean']:.3f}" + (f" ± {stats['sd']:.3f}" if stats["sd"] is not None else "")


def regime_tables(results: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The regime grid's PICD cells and DPO runs as rows (for display with pandas): the seeds stored, Acc@1 seed by
    seed, and each metric as mean ± sd over them."""
    by_seed = lambda v: " / ".join("-" if x is None else f"{x:.3f}" for x in v["per_seed"]["acc1"])
    rows = lambda part, cols: [{"run": k, "seeds": ", ".join(map(str, v["seeds"])), "Acc@1 by seed": by_seed(v),
                                **{h: _mean_sd(v["stats"][m]) for m, h in cols.items()}}
                               for k, v in results.get(part, {}).items()]
    return rows("picd", REGIME_PICD), rows("dpo", REGIME_DPO)


def plot_seeds(summary: dict[str, Any], path: str | Path | None = None):
    """Per-seed points and the mean of each run, one panel per metric."""
    import matplotlib.pyplot as plt

    names = list(summary["runs"])
    fig, axes = plt.subplots(1, len(SEED_METRICS), figsize=(4.2 * len(SEED_METRICS), 4.2), sharex=True)
    for ax, m in zip(axes, SEED_METRICS):
        for i, n in enumerate(names):
            vals = summary["runs"][n][m]
            ax.scatter([i] * len(vals), vals, color=f"C{i}", alpha=0.6, s=25)
            ax.hlines(np.mean(vals), i - 0.3, i + 0.3, color=f"C{i}", lw=2.5)
        ax.set_title(f"{METRIC_NAMES.get(m, m)} ({len(summary['runs'][names[0]]['seeds'])} seeds; bar = mean)"
                     + ("\n(no scaffold to keep: 0 for Direct-SFT, CoT-SFT)" if m == "latent_valid" else ""), fontsize=10)
        ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    return save_figure(fig, path)


def plot_regimes(results: dict[str, Any], path: str | Path | None = None):
    """Left: Acc@1 of each PICD cell of the regime grid, grouped by start and eta_struct, one bar per schedule
    (mean over seeds, each seed a dot). Right: Acc@1 and the share of pairs with DD > 0 of each DPO run."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(15, 4.6))
    picd, dpo = results.get("picd", {}), results.get("dpo", {})
    groups = list(dict.fromkeys((v["start"], v["eta_struct"]) for v in picd.values()))
    schedules = list(dict.fromkeys(v["schedule"] for v in picd.values()))
    width = 0.8 / max(1, len(schedules))
    for j, sched in enumerate(schedules):
        for i, g in enumerate(groups):
            cell = next((v for v in picd.values() if (v["start"], v["eta_struct"]) == g and v["schedule"] == sched), None)
            if cell is None:
                continue
            x = i + (j - (len(schedules) - 1) / 2) * width
            a.bar(x, cell["stats"]["acc1"]["mean"], width, color=f"C{j}", label=sched if i == 0 else None, alpha=0.75)
            a.scatter([x] * len(cell["per_seed"]["acc1"]), cell["per_seed"]["acc1"], color="k", s=9, zorder=3)
    a.set_xticks(range(len(groups)), [f"{s}, η {lr:g}" for s, lr in groups], rotation=20, ha="right", fontsize=8)
    a.set_ylabel("Acc@1 (bar: mean over seeds; dots: seeds)")
    a.set_title("PICD cells of the regime grid")
    if schedules:
        a.legend(fontsize=8, title="schedule")
    keys = list(dpo)
    if not keys:
        b.text(0.5, 0.5, "no DPO run of the grid stored yet (`make regimes`)", ha="center", transform=b.transAxes)
        b.set_axis_off()
        return save_figure(fig, path)
    x = np.arange(len(keys))
    for off, m, label in ((-0.2, "acc1", "Acc@1"), (0.2, "double_difference_positive", "DD > 0 (share of pairs)")):
        b.bar(x + off, [dpo[k]["stats"][m]["mean"] for k in keys], 0.4, label=label, alpha=0.75)
        for i, k in enumerate(keys):
            b.scatter([i + off] * len(dpo[k]["per_seed"][m]), dpo[k]["per_seed"][m], color="k", s=9, zorder=3)
    b.set_xticks(x, keys, rotation=35, ha="right", fontsize=8)
    b.axhline(0.5, color="k", lw=0.5)
    b.legend(fontsize=8)
    b.set_title("DPO runs by base (bar: mean over seeds; dots: seeds)")
    return save_figure(fig, path)


def regime_contrast_rows(results: dict[str, Any], families: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The grid's contrasts (``studies.regimes.contrasts``; those of ``families`` if given) as rows, smallest raw p
    first; the Holm p is over every contrast of the grid, not only those shown."""
    by = results.get("contrasts", {}).get("by_contrast", {})
    return [{"contrast (Acc@1)": k, "factor": v["family"], "seeds": ", ".join(map(str, v["seeds"])),
             "A - B by seed": " / ".join(f"{d:+.3f}" for d in v["per_seed_diff"]),
             "mean [95% CI]": f"{v['diff']:+.3f} [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]",
             "p (seed t)": f"{v['p']:.3f}", "Holm p": f"{v['p_holm']:.2f}"}
            for k, v in sorted(by.items(), key=lambda kv: (kv[1]["p"], kv[0])) if families is None or v["family"] in families]


def regime_docs_tables(results: dict[str, Any]) -> dict[str, str]:
    """The regime grid as docs/results.md shows it (a test checks the page carries these verbatim): its PICD cells,
    its DPO runs and its contrasts, each only once something of it is stored."""
    picd, dpo = regime_tables(results)
    parts = (("regimes-picd", picd), ("regimes-dpo", dpo), ("regimes-contrasts", regime_contrast_rows(results)))
    return {name: markdown(rows) for name, rows in parts if rows}


if __name__ == "__main__":  # python -m gplan_lib.core.evidence results/cpu/{seeds,regimes}.json: docs/results.md's tables
    import json
    import sys

    study = json.loads(Path(sys.argv[1]).read_text())
    for name, table in (regime_docs_tables(study) if "picd" in study else docs_tables(study)).items():
        print(f"<!-- {name} -->\n{table}\n")
