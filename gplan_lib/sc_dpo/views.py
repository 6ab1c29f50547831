"""Pictures and widgets for notebook 03: reward dynamics of SC-DPO vs vanilla DPO, and a panel that
changes a context's time or place and shows the plans of two students side by side."""
from __future__ import annotations

import html
import random
from pathlib import Path
from typing import Mapping

import matplotlib.pyplot as plt

from ..core.data import GsisrRow
from ..core.intents import describe_intent
from ..core.parsing import parse_output
from ..core.plotting import save_figure
from ..synthesis.counterfactual import change_city, move_location, to_holiday, to_weekend
from ..training.generation import StudentPlanner


def plot_reward_dynamics(series: Mapping[str, Mapping[str, list[float]]], gamma_l: float, gamma_h: float,
                         path: str | Path | None = None) -> plt.Figure:
    """r+, r-, gap = r+ - r- and centre = (r+ + r-)/2 over training steps, one panel per variant."""
    fig, axes = plt.subplots(1, len(series), figsize=(7 * len(series), 4), sharey=True, squeeze=False)
    for ax, (name, s) in zip(axes[0], series.items()):
        ax.plot(s["step"], s["r+"], label="r+ (matched y+)")
        ax.plot(s["step"], s["r-"], label="r- (mismatched y-)")
        ax.plot(s["step"], s["gap"], label="gap = r+ - r-", lw=2)
        ax.plot(s["step"], s["center"], label="centre", ls="--")
        ax.axhspan(gamma_l, gamma_h, color="tab:green", alpha=0.15, label=f"[γl, γh] = [{gamma_l}, {gamma_h}]")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(name)
        ax.set_xlabel("step")
    axes[0][0].set_ylabel("reward shift β·log(π/π_ref)")
    axes[0][-1].legend(fontsize=8)
    return save_figure(fig, path)


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
