"""Pictures and widgets for notebook 03: reward dynamics and loss terms of SC-DPO vs vanilla DPO, the loss of
Eq. 13 at chosen points and as a landscape with sliders, and a panel that changes a context's time or place
and shows the plans of two students side by side."""
from __future__ import annotations

import dataclasses
import html
import random
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import torch

from ..core.data import GsisrRow
from ..core.intents import describe_intent
from ..core.parsing import parse_output
from ..core.plotting import png_bytes, save_figure
from ..synthesis.counterfactual import change_city, move_location, to_holiday, to_weekend
from ..training.generation import StudentPlanner
from .config import SCDPOLoss
from .trainer import loss_minimum, sc_dpo_terms


def plot_reward_dynamics(series: Mapping[str, Mapping[str, list[float]]], gamma_l: float, gamma_h: float,
                         path: str | Path | None = None) -> plt.Figure:
    """Top: r+, r-, gap = r+ - r- and centre = (r+ + r-)/2 over training steps, one panel per variant, each on
    its own scale (a shared one flattens SC-DPO's small rewards). Bottom: the logged terms of Eq. 13, unweighted."""
    n = len(series)
    fig, axes = plt.subplots(2, n, figsize=(7 * n, 7), squeeze=False, sharex="col")
    for k, (name, s) in enumerate(series.items()):
        ax = axes[0][k]
        ax.plot(s["step"], s["r+"], label="r+ (matched y+)")
        ax.plot(s["step"], s["r-"], label="r- (mismatched y-)")
        ax.plot(s["step"], s["gap"], label="gap = r+ - r-", lw=2)
        ax.plot(s["step"], s["center"], label="centre = (r+ + r-)/2", ls="--")
        ax.axhspan(gamma_l, gamma_h, color="tab:green", alpha=0.15, label=f"SC-DPO band [γl, γh] = [{gamma_l}, {gamma_h}]")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{name}: reward shifts")
        ax.set_ylabel("β·(log π - log π_ref)")
        ax.legend(fontsize=7)
        terms = axes[1][k]
        for term in ("dpo", "anchor", "gap_low", "gap_high", "center"):
            terms.plot(s["step"], s[f"L_{term}"], label=TERM_NAMES[term])
        terms.set_yscale("symlog", linthresh=1e-4)
        terms.set_title(f"{name}: terms of Eq. 13 (before the λ weights)")
        terms.set_xlabel("optimizer step")
        terms.set_ylabel("term value (symlog)")
        terms.legend(fontsize=7)
    return save_figure(fig, path)


TERM_NAMES = {"dpo": "L_DPO (Eq. 8)", "anchor": "L_anchor (Eq. 9)", "gap_low": "L_gap,l (Eq. 10)",
              "gap_high": "L_gap,h (Eq. 11)", "center": "L_center (Eq. 12)"}


def loss_table(points: Sequence[tuple[float, float]], w: SCDPOLoss) -> list[dict[str, float]]:
    """Each term of Eq. 13 and the weighted total at hand-picked reward shifts (r+, r-)."""
    rp, rm = (torch.tensor([p[i] for p in points], dtype=torch.float64) for i in (0, 1))
    total, terms = sc_dpo_terms(rp, rm, w)
    return [{"r+": a, "r-": b, "gap": round(a - b, 4), **{TERM_NAMES[k]: round(float(v[i]), 4) for k, v in terms.items()},
             "L_SC-DPO (Eq. 13)": round(float(total[i]), 4)} for i, (a, b) in enumerate(points)]


def plot_landscape(w: SCDPOLoss, trajectories: Mapping[str, Mapping[str, list[float]]] | None = None,
                   extent: float = 1.0) -> plt.Figure:
    """Eq. 13 over (r+, r-): contours of log10 of the loss, the band of admissible gaps, the zero-centre line, the
    minimum (``loss_minimum``) and each trained run's path of mean (r+, r-) per logged step."""
    axis = torch.linspace(-extent, extent, 241, dtype=torch.float64)
    rp, rm = torch.meshgrid(axis, axis, indexing="ij")
    total, _ = sc_dpo_terms(rp, rm, w)
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    filled = ax.contourf(axis, axis, torch.log10(total).T, levels=30, cmap="viridis")
    fig.colorbar(filled, ax=ax, label="log10 L_SC-DPO")
    line = axis.numpy()
    for g, style in ((w.gamma_l, "--"), (w.gamma_h, ":")):
        ax.plot(line, line - g, "w" + style, lw=1, label=f"gap = {g}")
    ax.plot(line, 2 * w.m - line, color="orange", lw=1, label=f"centre = m = {w.m}")
    best = loss_minimum(w, extent)
    ax.plot(best["r+"], best["r-"], "r*", ms=14, label=f"minimum: gap {best['gap']:.2f}" + (" (grid edge)" if best["at_edge"] else ""))
    for name, s in (trajectories or {}).items():
        ax.plot(s["r+"], s["r-"], ".-", ms=3, lw=1, label=f"trained: {name}")
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_xlabel("r+ (matched plan)")
    ax.set_ylabel("r- (mismatched plan)")
    ax.legend(fontsize=7, loc="lower left")
    return fig


def landscape_explorer(w: SCDPOLoss, trajectories: Mapping[str, Mapping[str, list[float]]] | None = None):
    """ipywidgets: the weights and bounds of Eq. 13 as sliders; the landscape and where its minimum lies."""
    import ipywidgets as widgets

    sliders = {name: widgets.FloatSlider(value=getattr(w, name), min=0.0, max=hi, step=step, description=label,
                                         continuous_update=False, style={"description_width": "70px"})
               for name, label, hi, step in (("lambda_a", "λa", 10, 0.5), ("lambda_gl", "λg,l", 20, 0.5),
                                             ("lambda_gh", "λg,h", 10, 0.5), ("lambda_c", "λc", 10, 0.5),
                                             ("gamma_l", "γl", 0.5, 0.01), ("gamma_h", "γh", 0.8, 0.01))}
    image, note = widgets.Image(format="png"), widgets.HTML()

    def draw(_=None) -> None:
        now = dataclasses.replace(w, **{k: s.value for k, s in sliders.items()})
        best = loss_minimum(now)
        where = "on the grid's edge: no minimum inside" if best["at_edge"] else "inside the grid"
        band = "inside" if now.gamma_l <= best["gap"] <= now.gamma_h else "outside"
        note.value = (f"minimum at r+ = {best['r+']:.3f}, r- = {best['r-']:.3f}: gap {best['gap']:.3f} ({band} "
                      f"[γl, γh] = [{now.gamma_l}, {now.gamma_h}]), centre {best['center']:.3f}, {where}")
        image.value = png_bytes(plot_landscape(now, trajectories))

    for s in sliders.values():
        s.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox(list(sliders.values())[:3]), widgets.HBox(list(sliders.values())[3:]), note, image])


def context_panel(rows: list[GsisrRow], students: Mapping[str, str | Path], max_new_tokens: int = 400):
    """ipywidgets: pick a row, change its hour, location, city or day type; see each student's plan."""
    import ipywidgets as w

    planners = {name: StudentPlanner(d) for name, d in students.items()}
    pick = w.Dropdown(options=[(f"{r.id} · {r['trigger_1']} · {r['currenttime'][11:16]}", i) for i, r in enumerate(rows)],
                      description="context")
    hour = w.IntSlider(min=0, max=23, description="hour")
    move = w.Checkbox(description="toggle at order POI")
    city = w.Checkbox(description="toggle order city")
    day = w.Dropdown(options=["as is", "weekend", "holiday"], description="day")
    out = w.HTML()

    def context() -> GsisrRow:
        row = rows[pick.value]
        t = row.time.replace(hour=hour.value)
        row = row.replace(currenttime=t.strftime("%Y-%m-%d %H:%M:%S"))
        rng = random.Random(0)
        if move.value:
            row = move_location(row, rng) or row
        if city.value:
            row = change_city(row, rng) or row
        if day.value != "as is":
            row = (to_weekend if day.value == "weekend" else to_holiday)(row, rng) or row
        return row

    def show(_=None) -> None:
        row = context()
        cols = []
        for name, p in planners.items():
            plan = parse_output(p.generate([row], 1, max_new_tokens, desc=name)[0]["output"]).plan
            items = "".join(f"<li>{html.escape(describe_intent(a))}</li>" for a in plan) or "<li>(no plan)</li>"
            cols.append(f"<td style='vertical-align:top;padding:0 16px'><b>{name}</b><ol>{items}</ol></td>")
        facts = (f"{row['currenttime']} · weekend={row['weekendflag']} holiday={row['holidayflag']} · at {row['current_tag']} "
                 f"in {row['current_city']} · order {row['trigger_1']} in {row['trigger_2']} "
                 f"({'at' if row['current_poi_name'] == row['trigger_4'] else 'not at'} the order POI)")
        out.value = f"<p>{html.escape(facts)}</p><table><tr>{''.join(cols)}</tr></table>"

    def reset(_=None) -> None:
        hour.value = rows[pick.value].time.hour
        show()

    pick.observe(reset, names="value")
    for widget in (hour, move, city, day):
        widget.observe(show, names="value")
    reset()
    return w.VBox([w.HBox([pick, day]), w.HBox([hour, move, city]), out])
