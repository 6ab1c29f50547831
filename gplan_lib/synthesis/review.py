"""Human-in-the-loop review of seed triplets (paper Sec. 3.2: experts calibrate the seed set).

Decisions (accept / reject / edit with a corrected plan) are saved to ``seed_review.json`` beside
``seeds.jsonl``; ``load_seeds`` applies them, so the LLM teacher's few-shot prompts use the
reviewed set. An edited plan must pass the rule filter; its reasoning is rewritten to match it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.data import GsisrRow
from ..core.intents import loads_plan
from ..core.rule_filter import check_output
from .reasoning import explain

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
