"""The three-tier rule filter of paper Sec. 3.2, for teacher samples and model outputs alike.

Tier (i) format: the JSON plan parses and its length is within bounds (and, when a reasoning
block is present, it has one STEP per intent). Tier (ii) schema: known tools, required
parameters present, no unknown keys, admissible values. Tier (iii) logic: every reference to an
earlier result resolves to a place-producing intent right before it, at most one intent of the
mutual-exclusion group, no exact duplicate intent. Every failure is reported; nothing raises.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from .data import MAX_FIELD, read_gsisr_csv
from .intents import (
    ADMISSIBLE,
    MAX_PLAN_LEN,
    MIN_PLAN_LEN,
    MUTUAL_EXCLUSION,
    REFERENCE_VALUES,
    TOOL_KEY,
    TOOLS,
    canonical_intent,
)
from .parsing import ParsedOutput, parse_output

Tier = Literal["format", "schema", "logic"]
TIERS: tuple[Tier, ...] = ("format", "schema", "logic")
RULES: dict[str, Tier] = {
    "json_missing": "format", "json_parse": "format", "not_an_object": "format", "extra_text": "format", "too_long": "format",
    "plan_length": "format", "step_count": "format",
    "missing_tool": "schema", "unknown_tool": "schema", "missing_param": "schema",
    "unknown_param": "schema", "inadmissible_value": "schema",
    "dangling_reference": "logic", "mutual_exclusion": "logic", "duplicate_intent": "logic",
}
# Step blocks in any curriculum stage: text tags <STEP_i> or latent triplets <T_i_a|b|c>.
STEP_RE = re.compile(r"<STEP_(\d+)>|<T_(\d+)_a>")


@dataclass(frozen=True)
class Violation:
    """One failed rule: its tier, rule name, the 0-based intent index (None: whole plan), why."""

    tier: Tier
    rule: str
    index: int | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _v(rule: str, index: int | None, message: str) -> Violation:
    return Violation(RULES[rule], rule, index, message)


def check_schema(plan: list[dict[str, Any]]) -> list[Violation]:
    """Tier (ii): each intent uses a library tool with exactly its parameters and admissible values."""
    out = []
    for i, intent in enumerate(plan):
        if TOOL_KEY not in intent:
            out.append(_v("missing_tool", i, f"intent has no {TOOL_KEY!r} key"))
            continue
        tool = TOOLS.get(intent[TOOL_KEY]) if isinstance(intent[TOOL_KEY], str) else None
        if tool is None:
            out.append(_v("unknown_tool", i, f"tool {intent[TOOL_KEY]!r} is not in the library"))
            continue
        for p in tool.params:
            if p not in intent:
                out.append(_v("missing_param", i, f"{tool.name} needs {p!r}"))
            elif intent[p] not in ADMISSIBLE[p]:
                out.append(_v("inadmissible_value", i, f"{p}={intent[p]!r} is not one of {ADMISSIBLE[p]}"))
        for k in intent:
            if k != TOOL_KEY and k not in tool.params:
                out.append(_v("unknown_param", i, f"{tool.name} takes no parameter {k!r}"))
    return out


def check_logic(plan: list[dict[str, Any]]) -> list[Violation]:
    """Tier (iii): references resolve, one travel-class intent at most, no exact duplicates."""
    out, seen, exclusive = [], {}, []
    for i, intent in enumerate(plan):
        for k, v in intent.items():
            if k == TOOL_KEY or not isinstance(v, str) or v not in REFERENCE_VALUES:
                continue
            if i == 0:
                out.append(_v("dangling_reference", i, f"{k}={v!r} in first position has no earlier result"))
                continue
            prev_name = plan[i - 1].get(TOOL_KEY)
            prev = TOOLS.get(prev_name) if isinstance(prev_name, str) else None
            if prev is None or not prev.produces_place:
                out.append(_v("dangling_reference", i,
                              f"{k}={v!r} refers to intent {i - 1} ({prev_name!r}), which yields no place"))
        name = intent.get(TOOL_KEY)
        if isinstance(name, str) and name in MUTUAL_EXCLUSION:
            exclusive.append(i)
            if len(exclusive) >= 2:
                out.append(_v("mutual_exclusion", i, f"{name} after {plan[exclusive[0]][TOOL_KEY]} at "
                              f"{exclusive[0]}: at most one of {sorted(MUTUAL_EXCLUSION)}"))
        key = json.dumps(canonical_intent(intent), ensure_ascii=False, default=str)
        if key in seen:
            out.append(_v("duplicate_intent", i, f"repeats intent {seen[key]}"))
        else:
            seen[key] = i
    return out


def check_format(parsed: ParsedOutput) -> list[Violation]:
    """Tier (i): a parsable JSON array of objects, of bounded length, with one STEP per intent."""
    if parsed.status == "failed" and not parsed.plan and parsed.problem == "no JSON array":
        return [_v("json_missing", None, "no JSON array in the text")]
    out = []
    if parsed.status != "parsed":
        out.append(_v("json_parse", None, parsed.problem))
    out += [_v("not_an_object", i, "plan element is not a JSON object") for i in parsed.non_objects]
    n = len(parsed.plan) + len(parsed.non_objects)
    if not MIN_PLAN_LEN <= n <= MAX_PLAN_LEN:
        out.append(_v("plan_length", None, f"plan has {n} intents; allowed {MIN_PLAN_LEN}..{MAX_PLAN_LEN}"))
    if parsed.thought is not None:
        steps = sorted({int(a or b) for a, b in STEP_RE.findall(parsed.thought)})
        if steps and steps != list(range(1, n + 1)):
            out.append(_v("step_count", None, f"reasoning has steps {steps} for a plan of {n} intents"))
    return out


def check_output(text: str, strict: bool = False) -> list[Violation]:
    """All tiers on a label or raw model output. Returns [] when the sample passes. ``strict`` (for
    model-written labels and scored outputs): nothing but the optional leading reasoning block and
    the JSON array, besides white space (rule ``extra_text``)."""
    if not isinstance(text, str):
        return [_v("json_missing", None, f"expected text, got {type(text).__name__}")]
    if len(text) > MAX_FIELD:  # a label the CSV reader could not read back
        return [_v("too_long", None, f"{len(text):,} characters; a GSISR cell holds at most {MAX_FIELD:,}")]
    return check_parsed(parse_output(text), strict)


def check_parsed(parsed: ParsedOutput, strict: bool = False) -> list[Violation]:
    """All tiers on an output that has already been parsed (``strict`` as in ``check_output``)."""
    extra = [_v("extra_text", None, f"text besides the reasoning block and the JSON array: {parsed.outside[:40]!r}")
             ] if strict and parsed.outside else []
    return check_format(parsed) + extra + check_schema(parsed.plan) + check_logic(parsed.plan)


def passes(text: str) -> bool:
    """True when ``text`` passes every tier."""
    return not check_output(text)


def report_csv(csv_path: str | Path) -> dict[str, Any]:
    """The rule filter over every label of a GSISR CSV, rows that fail to load included."""
    loaded = read_gsisr_csv(csv_path, errors="collect")
    failures: dict[int, dict[str, Any]] = {}
    for err in loaded.errors:
        entry = failures.setdefault(err.row_index, {"id": err.row_id, "row": err.row_index, "violations": []})
        entry["violations"].append({"tier": "format", "rule": "csv_row", "index": None,
                                    "message": f"column {err.column!r}: {err.problem}"})
    for row, idx in zip(loaded.rows, loaded.indices):
        violations = check_output(row["raw_labels"])
        if violations:
            failures[idx] = {"id": row.id, "row": idx, "violations": [v.as_dict() for v in violations]}
    ordered = [failures[k] for k in sorted(failures)]
    by_rule = Counter(f"{v['tier']}/{v['rule']}" for f in ordered for v in f["violations"])
    return {"file": Path(csv_path).name, "n_rows": loaded.n_read, "n_failed": len(ordered),
            "by_rule": dict(sorted(by_rule.items())), "failures": ordered, "repeated_ids": loaded.repeated_ids}
