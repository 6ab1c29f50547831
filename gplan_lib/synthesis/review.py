"""Human-in-the-loop review of seed triplets (paper Sec. 3.2: experts calibrate the seed set).

Decisions (accept / reject / edit with a corrected plan) are saved to ``seed_review.json`` beside
``seeds.jsonl``; ``load_seeds`` applies them, so the LLM teacher's few-shot prompts use the
reviewed set. An edited plan must pass the rule filter; its reasoning is rewritten to match it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.data import GsisrRow, validate_cells
from ..core.files import write_json
from ..core.intents import loads_plan
from ..core.rule_filter import check_output
from .reasoning import explain

DECISIONS = ("accept", "reject", "edit")


class ReviewStore:
    """Decisions by seed id, persisted as JSON after every change."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.decisions: dict[str, dict[str, Any]] = (
                json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {})
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"{self.path}: not JSON ({type(exc).__name__})") from None
        for seed_id, entry in self.decisions.items() if isinstance(self.decisions, dict) else [("", None)]:
            if not isinstance(entry, dict) or entry.get("decision") not in DECISIONS or (
                    entry["decision"] == "edit" and not isinstance(entry.get("plan"), list)):
                raise ValueError(f"{self.path}: seed {seed_id[:40]!r}: a decision is {{'decision': one of {DECISIONS}"
                                 ", 'plan': [...] for an edit}")

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
        write_json(self.path, self.decisions, indent=1)


def read_seeds(path: str | Path) -> list[dict[str, Any]]:
    """seeds.jsonl: one expert triplet per line, each checked (a malformed one is an error naming the file, line
    and field, not a crash later in the teacher's prompt)."""
    seeds = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            seed = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"{path}:{n}: not a JSON object ({type(exc).__name__})") from None
        problem = _seed_problem(seed)
        if problem:
            raise ValueError(f"{path}:{n}: {problem}")
        seeds.append(seed)
    return seeds


def _seed_problem(seed: Any) -> str | None:
    """What is wrong with one seed record, or None."""
    if not isinstance(seed, dict):
        return "a seed is a JSON object with id, row, reasoning and plan"
    for key, kind in (("id", str), ("row", dict), ("reasoning", str), ("plan", list)):
        if not isinstance(seed.get(key), kind):
            return f"field {key!r} must be a {kind.__name__}"
    if not all(isinstance(v, str) for v in seed["row"].values()):
        return "field 'row' must map columns to strings"
    errors = validate_cells(seed["row"], 0, labels=False)
    if errors:
        return f"field 'row', column {errors[0].column!r}: {errors[0].problem}"
    if not all(isinstance(a, dict) for a in seed["plan"]):
        return "field 'plan' must be a list of intents (JSON objects)"
    return None


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
