"""Human-in-the-loop review of seed triplets (paper Sec. 3.2: experts calibrate the seed set).

Decisions (accept / reject / edit with a corrected plan) are saved to ``seed_review.json`` beside
``seeds.jsonl``; ``load_seeds`` applies them, so the LLM teacher's few-shot prompts use the
reviewed set. An edited plan must pass the rule filter; its reasoning is rewritten to match it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .data import GsisrRow
from .intents import describe_intent, dumps_plan, loads_plan
from .reasoning import explain
from .rule_filter import check_output

DECISIONS = ("accept", "reject", "edit")


class ReviewStore:
    """Decisions by seed id, persisted as JSON after every change."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.decisions: dict[str, dict[str, Any]] = (
            json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {})

    def record(self, seed: dict[str, Any], decision: str, plan_json: str | None = None) -> None:
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
        entry: dict[str, Any] = {"decision": decision}
        if decision == "edit":
            problems = check_output(plan_json or "")
            if problems:
                first = problems[0]
                raise ValueError(f"seed {seed['id']}: edited plan fails {first.tier}/{first.rule}: {first.message}")
            entry["plan"] = loads_plan(plan_json or "")
        self.decisions[seed["id"]] = entry
        self.path.write_text(json.dumps(self.decisions, ensure_ascii=False, indent=1), encoding="utf-8")


def read_seeds(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def load_seeds(dataset_dir: str | Path) -> list[dict[str, Any]]:
    """seeds.jsonl with the decisions of seed_review.json applied (rejected removed, edits applied)."""
    d = Path(dataset_dir)
    decisions = ReviewStore(d / "seed_review.json").decisions
    out = []
    for seed in read_seeds(d / "seeds.jsonl"):
        entry = decisions.get(seed["id"], {"decision": "accept"})
        if entry["decision"] == "reject":
            continue
        if entry["decision"] == "edit":
            demo = explain(GsisrRow(seed["row"]), entry["plan"])
            seed = {**seed, "plan": entry["plan"], "reasoning": demo.reasoning()}
        out.append(seed)
    return out


def effective(seed: dict[str, Any], store: ReviewStore) -> dict[str, Any]:
    """The seed as the decisions make it: an edited seed carries its new plan and matching reasoning."""
    entry = store.decisions.get(seed["id"], {})
    if entry.get("decision") != "edit":
        return seed
    return {**seed, "plan": entry["plan"], "reasoning": explain(GsisrRow(seed["row"]), entry["plan"]).reasoning()}


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
        header.value = (f"<b>seed {state['i'] + 1}/{len(seeds)}</b> id={seed['id']} · <b>{decision}</b> · "
                        f"{row['trigger_1']} order · {row['currenttime']} · at {row['current_tag']} in {row['current_city']}")
        steps = "".join(f"<li>{describe_intent(a)}</li>" for a in seed["plan"])
        body.value = f"<p style='font-size:90%'>{seed['reasoning']}</p><ol>{steps}</ol>"
        count.value = f"{len(store.decisions)} decisions recorded in {store.path.name}"
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
                status.value = f"saved to {store.path}" if name not in ("◀ prev", "next ▶") else ""
                show()
            except ValueError as exc:
                status.value = f"<span style='color:#b00'>not saved: {exc}</span>"
                show(keep_editor=True)
        return handler

    for name, b in buttons.items():
        b.on_click(act(name))
    show()
    return w.VBox([header, body, editor, w.HBox(list(buttons.values())), status, count])
