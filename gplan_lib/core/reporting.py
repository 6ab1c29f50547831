"""The tables and figures of the notebooks' own runs and of the sim-to-real study, built in one place: rows as
lists of dicts (one first column, ``planner``, for rows that are planners) for display with pandas. The seed
study and the regime grid are shown by ``core.evidence``."""
from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .intents import describe_intent
from .metrics import METRICS, Scores
from .paper import TABLE1, TABLE5
from .parsing import parse_output
from .paths import RESULTS
from .plotting import save_figure

SEED_METRICS = ("acc1", "ndcg3", "nes", "validity", "latent_valid")  # what the seed study keeps per row
METRIC_NAMES = {"acc1": "Acc@1", "ndcg3": "NDCG@3", "nes": "NES", "validity": "validity",
                "latent_valid": "Latent-Valid", "tool_acc1": "tool Acc@1", "tool_ndcg3": "tool NDCG@3"}


def metric_table(scores: Mapping[str, Scores], keys: Sequence[str], digits: int = 3) -> list[dict[str, Any]]:
    """One row per planner: each metric's mean, rounded (``nan`` where a planner has no such metric)."""
    return [{"planner": name, **{k: round(sc.means.get(k, float("nan")), digits) for k in keys}}
            for name, sc in scores.items()]


def interval_table(scores: Mapping[str, Scores], keys: Sequence[str] = (*METRICS, "validity")) -> list[dict[str, Any]]:
    """One row per planner: each metric as ``mean [lo, hi]``."""
    return [{"planner": name, "n": sc.n, **{k: sc.fmt(k) for k in keys}}
            for name, sc in scores.items()]


def beside_paper(ours: Mapping[str, Scores], paper: Mapping[str, Mapping[str, float]],
                 names: Mapping[str, str], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Rows pairing our runs with the paper's: ``names`` maps our run name -> the paper's row."""
    rows = []
    for ours_name, paper_name in names.items():
        sc = ours[ours_name]
        row: dict[str, Any] = {"planner": ours_name}
        for k in keys:
            row[f"{k} (paper)"] = paper.get(paper_name, {}).get(k, np.nan)
            row[f"{k} (ours)"] = sc.fmt(k)
        rows.append(row)
    return rows


def table1(scores: Mapping[str, Scores], paper_rows: Mapping[str, str]) -> list[dict[str, Any]]:
    """Table 1 rows: tool-level Acc@1 and NDCG@3 for every planner (full-intent Acc@1 where the
    planner emits parameters), beside the paper's numbers where it reports that model (``paper_rows``: our
    planner -> its row of paper Table 1)."""
    rows = []
    for name, sc in scores.items():
        fmt = lambda k: sc.fmt(k) if k in sc.means else "-"
        ref = TABLE1.get(paper_rows.get(name, ""), {})
        rows.append({"planner": name, "tool Acc@1": fmt("tool_acc1"), "tool NDCG@3": fmt("tool_ndcg3"),
                     "Acc@1 (full intent)": fmt("acc1"), "paper Acc@1": ref.get("acc1", np.nan),
                     "paper NDCG@3": ref.get("ndcg3", np.nan)})
    return rows


def table5(batch1: Mapping[str, Mapping[str, Any]], loaded: Mapping[str, Mapping[str, Any]],
           paper_rows: Mapping[str, str]) -> list[dict[str, Any]]:
    """Table 5 rows: batch-1 and under-load mean response time with 95% intervals, tokens and
    forward passes per request, and the paper's 4B time at QPS 10 (``paper_rows``: our planner -> its row of
    paper Table 5)."""
    ci = lambda d: f"{d['mean_ms']:.1f} [{d['ci95_ms'][0]:.1f}, {d['ci95_ms'][1]:.1f}]"
    return [{"planner": name, "batch 1 (ms)": ci(b), "tokens": round(b["mean_new_tokens"], 1),
             "forward passes": round(b.get("forward_passes", b["mean_new_tokens"]), 1),
             "under load (ms)": ci(loaded[name]) if name in loaded else "-",
             "paper 4B at QPS 10 (s)": TABLE5["4B"].get(paper_rows.get(name, ""), np.nan)} for name, b in batch1.items()]


def write_study(scale: str, name: str, summary: dict[str, Any], plot) -> None:
    """A study's committed result: results/<scale>/<name>.json and figures/<scale>/<name>.png drawn by ``plot``."""
    from .config import published_dirs
    from .files import write_result
    dirs = published_dirs(scale)
    write_result(dirs.results / f"{name}.json", summary, indent=1)
    plot(summary, dirs.figures / f"{name}.png")
    print(f"wrote {dirs.results / f'{name}.json'} and {dirs.figures / f'{name}.png'}")


def plot_input_gaps(gaps: dict[str, Any], ax=None, path: str | Path | None = None):
    """Per input feature, the distance to held-out real users of the built-in world, the calibrated world and
    other real users (the floor a finite sample leaves), from ``synthesis.calibration.fold_gaps``."""
    import matplotlib.pyplot as plt

    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(9, 0.32 * len(gaps["features"]) + 1.2))
    names, y = gaps["features"], np.arange(len(gaps["features"]))
    for k, (src, colour) in enumerate(zip(gaps["mean"], ("C3", "C0", "0.55"))):
        ax.barh(y + (k - 1) * 0.27, [gaps["mean"][src][f] for f in names], 0.27, color=colour, label=src)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(f"total variation distance to held-out real users (mean of {gaps['folds']} user folds)")
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path) if fig is not None else ax


def sim_to_real_table(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per planner of the sim-to-real study: metrics on held-out users with 95% intervals."""
    out = []
    for name, sc in summary["scores"].items():
        row = {"planner": name}
        for m in ("acc1", "ndcg3", "nes", "validity"):
            lo, hi = sc[f"{m}_ci95"]
            row[METRIC_NAMES[m]] = f"{sc[m]:.3f} [{lo:.3f}, {hi:.3f}]"
        row["Acc@1 per fold"] = " ".join(f"{v:.2f}" for v in sc["acc1_by_fold"])
        out.append(row)
    return out


def sim_to_real_reading(summary: dict[str, Any]) -> str:
    """What a sim-to-real study found, in sentences computed from its summary (Markdown)."""
    sc, tests = summary["scores"], summary["paired"]
    best, goal = summary["best_source"], summary["goal"]

    def acc(name: str) -> str:
        lo, hi = sc[name]["acc1_ci95"]
        return f"{sc[name]['acc1']:.3f} [{lo:.3f}, {hi:.3f}]"

    def versus(a: str, b: str) -> str:
        t = tests.get(f"{a} vs {b}")
        if t is None:
            return ""
        return (f"{t['acc1_diff']:+.3f} Acc@1 vs {b} ({t['acc1_a_only']} rows right only with {a}, {t['acc1_b_only']} "
                f"only with {b}; McNemar p = {t['acc1_p']:.2g}, Holm {t['acc1_p_holm']:.2g})")
    lines = [f"- **Best training source: {best}**, Acc@1 {acc(best)} on {summary['n_rows']} held-out rows of "
             f"{summary['n_users']} users ({summary['folds']} user folds, {summary['method']}, one training seed per fold)."]
    if best != "world":
        lines.append(f"- Against the world as today: {versus(best, 'world')}.")
    significant = [k for k, t in tests.items() if t["acc1_p_holm"] < 0.05]
    lines.append(f"- Comparisons whose Acc@1 difference survives Holm's correction over all {2 * len(tests)} tests: "
                 + (", ".join(f"{k} ({tests[k]['acc1_diff']:+.3f})" for k in significant) or "none") + ".")
    lines.append(f"- Offline teacher {acc('offline teacher')}, three-rule floor {acc('three-rule floor')}: the best student is "
                 f"{goal['teacher_acc1'] - goal['best_acc1']:.3f} below the teacher "
                 f"({'within' if goal['within_5_points_of_teacher'] else 'not within'} the 5-point goal) and "
                 f"{'above' if goal['above_three_rule_floor'] else 'not above'} the floor.")
    curve = summary["learning_curve"]
    if curve["rows"]:
        points = ", ".join(f"{n} rows {a:.3f}" for n, a in zip([*curve["rows"], curve["full"]["rows"]],
                                                                 [*curve["acc1"], curve["full"]["acc1"]]))
        lines.append(f"- Learning curve (real gold plans, fold 0's held-out users): {points}.")
    return "\n".join(lines)


def plot_sim_to_real(summary: dict[str, Any], path: str | Path | None = None):
    """Left: Acc@1 on held-out users per training source (bars: 95% row-bootstrap intervals), the offline teacher
    and the three-rule floor as lines; middle: the learning curve; right: input gaps before and after calibration."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2), width_ratios=(1.2, 0.9, 1.3))
    ax = axes[0]
    sources = [n for n in summary["scores"] if n not in ("offline teacher", "three-rule floor")]
    sc = summary["scores"]
    acc = [sc[n]["acc1"] for n in sources]
    err = np.array([[sc[n]["acc1"] - sc[n]["acc1_ci95"][0], sc[n]["acc1_ci95"][1] - sc[n]["acc1"]] for n in sources]).T
    ax.bar(range(len(sources)), acc, yerr=err, capsize=4, color=[f"C{i}" for i in range(len(sources))])
    for ref, style in (("offline teacher", "--"), ("three-rule floor", ":")):
        ax.axhline(sc[ref]["acc1"], color="k", ls=style, lw=1.2, label=f"{ref} {sc[ref]['acc1']:.3f}")
    ax.set_xticks(range(len(sources)), sources, rotation=25, ha="right")
    ax.set_ylabel("Acc@1 on held-out users")
    ax.set_title(f"{summary['n_rows']} rows of {summary['n_users']} users, {summary['folds']} user folds")
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[1]
    curve = summary["learning_curve"]
    xs = [*curve["rows"], curve["full"]["rows"]]
    ys = [*curve["acc1"], curve["full"]["acc1"]]
    ax.plot(xs, ys, "o-", color="C3", label="real, gold plans (fold 0)")
    ax.axhline(summary["scores"]["offline teacher"]["acc1_by_fold"][0], color="k", ls="--", lw=1, label="teacher (fold 0)")
    ax.axhline(summary["scores"]["three-rule floor"]["acc1_by_fold"][0], color="k", ls=":", lw=1, label="three-rule (fold 0)")
    ax.set_xscale("log")
    ax.set_xticks(xs, [str(x) for x in xs], minor=False)
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel("training rows")
    ax.set_ylabel("Acc@1 on fold 0's held-out users")
    ax.set_title("learning curve")
    ax.legend(fontsize=8)
    plot_input_gaps(summary["input_gaps"], ax=axes[2])
    axes[2].set_title("input gaps")
    return save_figure(fig, path)


def describe_pair(rec_x: dict, rec_xp: dict) -> tuple[dict[str, tuple[str, str]], dict[str, list[str]]]:
    """For display: the cells that differ between x and x', and both matched plans in English."""
    changed = {k: (rec_x["row"][k], rec_xp["row"][k]) for k in rec_x["row"] if rec_x["row"][k] != rec_xp["row"][k]}
    plans = {"plan matched to x": parse_output(rec_x["chosen"]).plan, "plan matched to x'": parse_output(rec_xp["chosen"]).plan}
    n = max(len(p) for p in plans.values())
    return changed, {k: [describe_intent(a) for a in p] + [""] * (n - len(p)) for k, p in plans.items()}


def pair_view(rec_x: dict, rec_xp: dict):
    """A counterfactual pair side by side (HTML): what changed from x to x', then both matched plans
    position by position, the positions where they differ highlighted; no text is cut."""
    from IPython.display import HTML

    changed, plans = describe_pair(rec_x, rec_xp)
    cells = "; ".join(f"<code>{escape(k)}</code>: {escape(a)} &rarr; {escape(b)}" for k, (a, b) in changed.items())
    left, right = plans["plan matched to x"], plans["plan matched to x'"]
    mark = "background:#ffe08a"
    rows = "".join(
        f"<tr><td>{i + 1}</td><td style='{mark if a != b else ''}'>{escape(a)}</td>"
        f"<td style='{mark if a != b else ''}'>{escape(b)}</td></tr>" for i, (a, b) in enumerate(zip(left, right)))
    return HTML(f"<p><b>{escape(rec_x['perturbation'])}</b>: {cells}</p>"
                "<table><tr><th>#</th><th>plan matched to x</th><th>plan matched to x'</th></tr>"
                f"{rows}</table><p style='font-size:85%'>highlighted: the positions where the plans differ</p>")


def committed_scores(file: str, section: str, scale: str) -> dict[str, dict[str, float]] | None:
    """The ``section`` of the committed results/<scale>/<file> (what the README reports), or None at a scale
    with no committed run."""
    path = RESULTS / scale / file
    return json.loads(path.read_text(encoding="utf-8"))[section] if path.is_file() else None


def against_committed(this_run: Mapping[str, Mapping[str, float]], committed: Mapping[str, Mapping[str, float]] | None,
                      seeds: Mapping[str, Any] | None, claims: Sequence[tuple[str, str, str]],
                      keys: Sequence[str] = ("acc1", "nes")) -> tuple[list[dict[str, Any]], str]:
    """The closing reading of a notebook, computed from the reader's own run: a row per (planner, metric) with this
    run, the committed run and the committed seed study's range over its seeds, flagging numbers outside that range;
    and a paragraph on each claim (``(metric, a, b)``: is a above b?) in this run, the committed run and per seed."""
    rows, outside = [], []
    for name, means in this_run.items():
        for k in keys:
            runs = (seeds or {}).get("runs", {}).get(name, {}).get(k)
            lo, hi = (min(runs), max(runs)) if runs else (np.nan, np.nan)
            inside = "-" if not runs else ("yes" if lo - 1e-9 <= means[k] <= hi + 1e-9 else "NO")
            if inside == "NO":
                outside.append(f"{name} {METRIC_NAMES.get(k, k)} {means[k]:.3f} (seeds {lo:.3f}-{hi:.3f})")
            rows.append({"planner": name, "metric": METRIC_NAMES.get(k, k), "this run": round(means[k], 3),
                         "committed run": round(committed[name][k], 3) if committed and name in committed else np.nan,
                         "seeds (min)": round(lo, 3), "seeds (max)": round(hi, 3), "inside the range": inside})
    lines = []
    for k, a, b in claims:
        here = this_run[a][k] - this_run[b][k]
        said = [f"**{a} {'above' if here > 0 else 'not above'} {b}** on {METRIC_NAMES.get(k, k)} in this run "
                f"({this_run[a][k]:.3f} vs {this_run[b][k]:.3f})"]
        if committed and a in committed and b in committed:
            said.append(f"committed run {committed[a][k]:.3f} vs {committed[b][k]:.3f}")
        runs = (seeds or {}).get("runs", {})
        if a in runs and b in runs:
            wins = sum(x > y for x, y in zip(runs[a][k], runs[b][k]))
            said.append(f"above in {wins} of {len(runs[a][k])} committed seeds")
        lines.append("- " + "; ".join(said) + ".")
    if seeds is None:
        verdict = "No committed seed study at this scale, so there is no range to compare this run with."
    elif outside:
        verdict = (f"**{len(outside)} of {sum(r['inside the range'] != '-' for r in rows)} numbers lie outside the "
                   f"committed seeds' range**: {'; '.join(outside)}. A run on another CPU (its vector kernels), "
                   f"another scale or changed code lands elsewhere; one run is one seed, not a finding.")
    else:
        verdict = "Every number with a committed seed range lies inside it."
    return rows, "\n".join(lines) + "\n\n" + verdict
