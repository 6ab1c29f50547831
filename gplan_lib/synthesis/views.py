"""Notebook 01's pictures and controls: the filter's rejections and the seed review panel (ipywidgets);
counterfactual pairs are drawn by ``core.reporting.pair_view`` (notebook 03 shows them too)."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ..core.data import GsisrRow
from ..core.intents import describe_intent, dumps_plan
from ..core.plotting import save_figure
from .review import ReviewStore, effective


def plot_rejections(report: dict[str, Any], path: str | Path | None = None):
    """Rejected candidates by rule (coloured by tier), and injected mistakes vs caught."""
    import matplotlib.pyplot as plt  # only the notebook draws; the CLI stays light

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4))
    rules = list(report["by_rule"])
    colours = {"format": "tab:blue", "schema": "tab:orange", "logic": "tab:green"}
    a.barh(rules, [report["by_rule"][r] / report["candidates"] for r in rules],
           color=[colours[r.split("/")[0]] for r in rules])
    a.set_xlabel("share of candidates failing the rule")
    a.set_title(f"rule filter: {report['rejection_rate']:.1%} of {report['candidates']} candidates rejected")
    names = list(report["injected"])
    y = range(len(names))
    b.barh([i + 0.2 for i in y], [report["injected"][n] for n in names], 0.4, label="injected")
    b.barh([i - 0.2 for i in y], [report["caught"][n] for n in names], 0.4, label="caught by its rule")
    b.set_yticks(list(y), names)
    b.set_title("noisy-teacher mistakes")
    b.legend()
    return save_figure(fig, path)


def review_panel(seeds: list[dict[str, Any]], store: ReviewStore):
    """An ipywidgets panel over the raw seeds (``read_seeds``): one at a time, its context, reasoning and
    plan as the decisions so far make them; accept, reject or edit. A rejected edit stays in the box with
    the rule it broke, so it can be corrected."""
    import ipywidgets as w

    state = {"i": 0}
    header, body, count, status = w.HTML(), w.HTML(), w.HTML(), w.HTML()
    editor = w.Textarea(layout=w.Layout(width="100%", height="90px"))
    buttons = {name: w.Button(description=name) for name in ("◀ prev", "accept", "reject", "save edit", "next ▶")}

    def show(keep_editor: bool = False) -> None:
        seed = effective(seeds[state["i"]], store)
        row = GsisrRow(seed["row"])
        decision = store.decisions.get(seed["id"], {}).get("decision", "not reviewed")
        e = lambda v: html.escape(str(v))  # every value from the seeds file is text, never markup
        header.value = (f"<b>seed {state['i'] + 1}/{len(seeds)}</b> id={e(seed['id'])} · <b>{e(decision)}</b> · "
                        f"{e(row['trigger_1'])} order · {e(row['currenttime'])} · at {e(row['current_tag'])} in "
                        f"{e(row['current_city'])}")
        steps = "".join(f"<li>{e(describe_intent(a))}</li>" for a in seed["plan"])
        body.value = f"<p style='font-size:90%'>{e(seed['reasoning'])}</p><ol>{steps}</ol>"
        count.value = f"{len(store.decisions)} decisions recorded in {e(store.path.name)}"
        if not keep_editor:
            editor.value = dumps_plan(seed["plan"])

    def act(name: str):
        def handler(_):
            seed = seeds[state["i"]]
            try:
                if name in ("accept", "reject"):
                    store.record(seed, name)
                elif name == "save edit":
                    store.record(seed, "edit", editor.value)
                else:
                    state["i"] = (state["i"] + (1 if name == "next ▶" else -1)) % len(seeds)
                status.value = f"saved to {html.escape(str(store.path))}" if name not in ("◀ prev", "next ▶") else ""
                show()
            except ValueError as exc:
                status.value = f"<span style='color:#b00'>not saved: {html.escape(str(exc))}</span>"
                show(keep_editor=True)
        return handler

    for name, b in buttons.items():
        b.on_click(act(name))
    show()
    return w.VBox([header, body, editor, w.HBox(list(buttons.values())), status, count])
