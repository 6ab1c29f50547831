"""Widgets for notebook 00: a plan in a text box with the rule filter's verdict (Sec. 3.2) beside it, and the
three offline metrics (Sec. 5.1.2, Eq. 14) of a predicted plan against a gold one, both updating as you type."""
from __future__ import annotations

import html

from . import metrics, rule_filter
from .parsing import parse_output


def _verdict(text: str) -> str:
    found = rule_filter.check_output(text)
    if not found:
        return f"<b style='color:green'>passes all three tiers</b> ({len(parse_output(text).plan)} intents)"
    rows = "".join(f"<tr><td>{v.tier}</td><td>{v.rule}</td><td>{'' if v.index is None else v.index}</td>"
                   f"<td>{html.escape(v.message)}</td></tr>" for v in found)
    return (f"<b style='color:#b00'>rejected: {len(found)} violation(s)</b><table><tr><th>tier</th><th>rule</th>"
            f"<th>intent</th><th>why</th></tr>{rows}</table>")


def filter_box(text: str):
    """ipywidgets: edit a plan (a JSON array, optionally after a <THOUGHT> block); the verdict updates live."""
    import ipywidgets as w

    box = w.Textarea(value=text, layout=w.Layout(width="100%", height="110px"), continuous_update=True)
    verdict = w.HTML(_verdict(text))
    box.observe(lambda change: setattr(verdict, "value", _verdict(change["new"])), names="value")
    return w.VBox([box, verdict])


def worked_metrics(pred: list[dict], gold: list[dict]) -> dict[str, float]:
    """Acc@1, NDCG@3, the weighted edit distance D and NES (Eq. 14) of one predicted plan against its gold plan."""
    return {"Acc@1": metrics.acc_at_1(pred, gold), "NDCG@3": round(metrics.ndcg_at_3(pred, gold), 4),
            "D (edit distance)": round(metrics.edit_distance(pred, gold), 4), "NES": round(metrics.nes(pred, gold), 4)}
