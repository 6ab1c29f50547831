"""Distributions of plans (length, tool by position, first intent, parameter values) and their
plots, for one row set or several side by side (released vs synthetic)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from textwrap import fill
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .intents import PARAM_GLOSS, TOOL_KEY, TOOLS, VALUE_GLOSS, Plan
from .plotting import save_figure

TOOL_NAMES = list(TOOLS)


def plan_lengths(plans: Sequence[Plan]) -> Counter:
    return Counter(len(p) for p in plans)


def first_intents(plans: Sequence[Plan]) -> Counter:
    return Counter(p[0].get(TOOL_KEY) for p in plans if p)


def tools_by_position(plans: Sequence[Plan], max_pos: int = 6) -> np.ndarray:
    """Share of plans with each tool (rows, library order) at each position (columns)."""
    m = np.zeros((len(TOOL_NAMES), max_pos))
    for p in plans:
        for j, a in enumerate(p[:max_pos]):
            if a.get(TOOL_KEY) in TOOLS:
                m[TOOL_NAMES.index(a[TOOL_KEY]), j] += 1
    return m / max(len(plans), 1)


def param_values(plans: Sequence[Plan]) -> Counter:
    """Counts of (parameter, value) over all intents."""
    return Counter((k, str(v)) for p in plans for a in p for k, v in a.items() if k != TOOL_KEY)


def _shares(c: Counter, keys: Sequence) -> np.ndarray:
    total = sum(c.values()) or 1
    return np.array([c.get(k, 0) / total for k in keys])


def plot_distributions(sets: Mapping[str, Sequence[Plan]], path: str | Path | None = None) -> plt.Figure:
    """Plan length, first intent and parameter values for each named set (bars side by side),
    and tools by position for each set (heatmaps)."""
    names = list(sets)
    fig = plt.figure(figsize=(15, 8 + 3 * len(names)))
    grid = fig.add_gridspec(1 + len(names), 3, height_ratios=[1.2] + [1] * len(names))
    width = 0.8 / len(names)
    lengths = sorted(set().union(*(plan_lengths(s) for s in sets.values())))
    params = sorted(set().union(*(param_values(s) for s in sets.values())))
    for col, (title, keys, counter) in enumerate([
        ("plan length", lengths, plan_lengths), ("first intent", TOOL_NAMES, first_intents),
        ("parameter values", params, param_values)]):
        ax = fig.add_subplot(grid[0, col])
        for i, n in enumerate(names):
            ax.bar(np.arange(len(keys)) + i * width, _shares(counter(sets[n]), keys), width, label=n)
        labels = [f"{PARAM_GLOSS.get(k[0], k[0])}={VALUE_GLOSS.get(k[1], k[1])}" if isinstance(k, tuple) else str(k)
                  for k in keys]
        ax.set_xticks(np.arange(len(keys)) + width * (len(names) - 1) / 2, labels,
                      rotation=90 if col == 2 else 45, fontsize=7 if col == 2 else 9)
        ax.set_title(f"{title} (share)")
        ax.legend()
    for r, n in enumerate(names, 1):
        ax = fig.add_subplot(grid[r, :])
        m = tools_by_position(sets[n])
        im = ax.imshow(m.T, aspect="auto", cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(TOOL_NAMES)), [f"{t}\n{fill(TOOLS[t].gloss, 16)}" for t in TOOL_NAMES], fontsize=8)
        ax.set_yticks(range(m.shape[1]), [f"pos {j + 1}" for j in range(m.shape[1])])
        ax.set_title(f"{n}: share of plans with tool at position")
        for (i, j), v in np.ndenumerate(m):
            if v >= 0.02:
                ax.text(i, j, f"{v:.2f}", ha="center", va="center", fontsize=7, color="k" if v < 0.6 else "w")
        fig.colorbar(im, ax=ax, fraction=0.02)
    return save_figure(fig, path)


def _tvd(p: Counter, q: Counter) -> float:
    """Total variation distance between two count distributions."""
    keys = set(p) | set(q)
    tp, tq = sum(p.values()) or 1, sum(q.values()) or 1
    return 0.5 * sum(abs(p.get(k, 0) / tp - q.get(k, 0) / tq) for k in keys)


def distribution_gaps(reference: Sequence[Plan], other: Sequence[Plan], top: int = 3) -> dict[str, object]:
    """How far ``other``'s plans are from ``reference``'s: total variation distance per view, and
    the categories with the largest share differences (other minus reference)."""
    views = {"plan length": plan_lengths, "first intent": first_intents, "parameter values": param_values}
    out: dict[str, object] = {}
    for name, fn in views.items():
        p, q = fn(reference), fn(other)
        tp, tq = sum(p.values()) or 1, sum(q.values()) or 1
        diffs = sorted(((q.get(k, 0) / tq - p.get(k, 0) / tp, k) for k in set(p) | set(q)),
                       key=lambda x: -abs(x[0]))[:top]
        out[name] = {"tvd": round(_tvd(p, q), 4), "largest": [(str(k), round(d, 4)) for d, k in diffs]}
    m_ref, m_oth = tools_by_position(reference), tools_by_position(other)
    out["tools by position"] = {"mean tvd over positions": round(float(0.5 * np.abs(m_ref - m_oth).sum(0).mean()), 4)}
    return out
