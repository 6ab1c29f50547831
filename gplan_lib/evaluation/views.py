"""Figures and the per-sample explorer of notebook 04."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..core.data import GsisrRow
from ..core.intents import describe_intent
from ..core.metrics import Scores
from ..core.parsing import parse_output
from ..core.plotting import save_figure
from ..core.rule_filter import check_parsed
from ..core.scaffold import latent_valid
from ..core.situation import situation_of
from .judge import Verdict

DPI = 120  # notebook 04's figures


GROUP_COLOURS = {"baseline": "#7aa6c2", "baseline + facts": "#b8d3e3", "GPlan student": "#2e7d4f",
                 "floor / teacher": "#b0b0b0"}


def plot_scores(panels: Mapping[str, Mapping[str, Scores]], key: str, paper: Mapping[str, float] | None = None,
                title: str = "", path: str | Path | None = None, groups: Mapping[str, str] | None = None) -> plt.Figure:
    """One horizontal bar per planner with its 95% interval, a panel per set of rows, coloured by ``groups``
    (planner -> a key of ``GROUP_COLOURS``); the paper's value (where the planner has one) as a diamond."""
    from ..core.reporting import METRIC_NAMES
    groups = groups or {}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 0.45 * max(map(len, panels.values())) + 1.4),
                             squeeze=False, sharey=True)
    for ax, (panel, scores) in zip(axes[0], panels.items()):
        names = list(scores)
        means = np.array([scores[n].means[key] for n in names])
        lo = means - np.array([scores[n].ci[key][0] for n in names])
        hi = np.array([scores[n].ci[key][1] for n in names]) - means
        colours = [GROUP_COLOURS.get(groups.get(n, ""), "#7aa6c2") for n in names]
        ax.barh(names, means, xerr=[lo, hi], color=colours, capsize=3)
        marks = [(paper[n], n) for n in names if paper and n in paper]  # by name: the panels share one y axis
        if marks:
            ax.plot(*zip(*marks), "D", color="#c0392b", linestyle="none", label="paper")
        for g in dict.fromkeys(groups[n] for n in names if n in groups):
            ax.barh([names[0]], [0], color=GROUP_COLOURS[g], label=g)  # legend entries only
        if marks or groups:
            ax.legend(loc="lower right", fontsize=8)
        ax.set_title(panel)
        ax.set_xlabel(f"{METRIC_NAMES.get(key, key)} (bars: 95% bootstrap interval)")
        ax.set_xlim(0, max(1.0, float((means + hi).max()) + 0.05))
        ax.invert_yaxis()
    fig.suptitle(title)
    return save_figure(fig, path, DPI)


def plot_latency(batch1: Mapping[str, Mapping[str, float]], loaded: Mapping[str, Mapping[str, float]],
                 qps: float, path: str | Path | None = None) -> plt.Figure:
    """Mean response time per method at batch 1 (constrained decoding included) and under the fixed request rate
    (where measured), with 95% bootstrap intervals, and the mean tokens generated above each pair."""
    names = list(batch1)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8.5, 3.8))
    err = lambda d: np.array([[d["mean_ms"] - d["ci95_ms"][0]], [d["ci95_ms"][1] - d["mean_ms"]]])
    for i, n in enumerate(names):
        ax.bar(i - 0.2, batch1[n]["mean_ms"], 0.4, yerr=err(batch1[n]), capsize=3, color="#7aa6c2",
               label="batch 1" if i == 0 else None)
        if n in loaded:
            ax.bar(i + 0.2, loaded[n]["mean_ms"], 0.4, yerr=err(loaded[n]), capsize=3, color="#e39b5b",
                   label=f"open loop, {qps:g} requests/s" if i == 0 else None)
        top = max(batch1[n]["ci95_ms"][1], loaded[n]["ci95_ms"][1] if n in loaded else 0)
        ax.text(i, top * 1.02, f"{batch1[n]['mean_new_tokens']:.0f} tok", ha="center", fontsize=8)
    ax.set_xticks(x, [n.replace(", ", "\n") for n in names], fontsize=8)
    ax.set_ylabel("mean response time (ms)")
    ax.set_title("Response time (bars: 95% bootstrap interval over requests)")
    ax.legend(fontsize=8)
    return save_figure(fig, path, DPI)


def _cards(plan: Sequence[Mapping[str, str]]) -> str:
    style = "display:inline-block;border:1px solid #8aa;border-radius:6px;padding:2px 6px;margin:2px;background:#f4f8fa"
    return "".join(f'<span style="{style}">{i}. {html.escape(describe_intent(a))}</span>'
                   for i, a in enumerate(plan, 1)) or "<i>no parsable plan</i>"


def sample_html(row: GsisrRow, outputs: Mapping[str, str], verdicts: Mapping[str, Verdict] | None = None) -> str:
    """One sample: its context facts, the gold plan and each model's plan as cards, with the rule
    filter's verdict, Latent-Valid and the judge's scores."""
    s = situation_of(row)
    facts = (f"order <b>{s.order}</b>{' (at its POI)' if s.at_order_poi else ''}; at a <b>{s.place}</b> place "
             f"({html.escape(row['current_tag'])}); {row['currenttime']} ({s.band}); "
             f"{'same city as the order' if s.same_city_as_order else 'another city than the order'}; "
             f"{'away from home' if s.trip else 'home city'}{'; day off' if s.day_off else ''}")
    parts = [f"<p><b>Row {html.escape(row.id)}</b>: {facts}</p>", f"<p><b>Gold</b><br>{_cards(row.plan)}</p>"]
    for name, text in outputs.items():
        parsed = parse_output(text)
        violations = check_parsed(parsed)
        verdict = "passes the rule filter" if not violations else "fails: " + ", ".join(
            f"{v.tier}/{v.rule}" for v in violations)
        lv = latent_valid(text, len(parsed.plan))
        judge = ""
        if verdicts and name in verdicts:
            v = verdicts[name]
            judge = f"; judge Flow {v.flow} Logic {v.logic} ST {v.st}"
        parts.append(f"<p><b>{html.escape(name)}</b> <small>({verdict}; Latent-Valid "
                     f"{'yes' if lv[0] else 'no: ' + html.escape(lv[1])}{judge})</small><br>{_cards(parsed.plan)}</p>")
    return "".join(parts)


def explorer(rows: Sequence[GsisrRow], outputs: Mapping[str, Sequence[dict]],
             verdicts: Mapping[str, Sequence[Verdict]] | None = None) -> Any:
    """A slider over samples showing ``sample_html`` for each (``outputs``: model -> records)."""
    import ipywidgets as w

    slider = w.IntSlider(0, 0, len(rows) - 1, description="sample")
    view = w.HTML()

    def show(_=None) -> None:
        i = slider.value
        view.value = sample_html(rows[i], {n: recs[i]["output"] for n, recs in outputs.items()},
                                 {n: v[i] for n, v in (verdicts or {}).items()})

    slider.observe(show, "value")
    show()
    return w.VBox([slider, view])
