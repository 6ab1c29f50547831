"""Reading a plan out of a label or a raw model output, as the released evaluation does.

The text may carry a reasoning prefix (``<THOUGHT>...</THOUGHT>``, in text or latent form), a
```json fence, or a truncated array. The order of attempts follows the released test script:
a balanced array that parses gives its objects; otherwise every complete ``{...}`` object with
a ``工具名称`` key is recovered, after the first ``[`` when the array is unclosed, else over the
whole text. Unlike the released script, bracket matching here ignores brackets inside strings.
Parsing never raises on a string and takes time linear in its length (no regex backtracking over
reasoning tags; nesting too deep for ``json`` counts as a parse failure).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

from .intents import TOOL_KEY, Plan

OPEN, CLOSE = "<THOUGHT>", "</THOUGHT>"
FENCE_RE = re.compile(r"```json\s*(.*?)(?:```|$)", re.S)

Status = Literal["parsed", "recovered", "failed"]


@dataclass
class ParsedOutput:
    """A plan read from text. ``status``: ``parsed`` (a whole JSON array), ``recovered``
    (objects salvaged from a broken or truncated array) or ``failed`` (nothing usable)."""

    plan: Plan
    status: Status
    thought: str | None = None
    problem: str = ""
    non_objects: list[int] = field(default_factory=list)
    outside: str = ""   # non-blank text besides the leading reasoning block and the JSON array


def thought_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each closed ``<THOUGHT>...</THOUGHT>`` block, in order, non-overlapping (what a
    lazy regex finds), in one linear scan."""
    spans, i = [], 0
    while (start := text.find(OPEN, i)) != -1:
        end = text.find(CLOSE, start + len(OPEN))
        if end == -1:
            break
        spans.append((start, end + len(CLOSE)))
        i = end + len(CLOSE)
    return spans


def thought_blocks(text: str) -> list[str]:
    """The inner text of each closed THOUGHT block."""
    return [text[a + len(OPEN):b - len(CLOSE)] for a, b in thought_spans(text)]


def split_thought(text: str) -> tuple[str | None, str]:
    """Return (the first THOUGHT block's inner text or None, the text with that block removed)."""
    spans = thought_spans(text)
    if not spans:
        return None, text
    a, b = spans[0]
    return text[a + len(OPEN):b - len(CLOSE)], text[:a] + text[b:]


def _loads(text: str):
    """json.loads, with nesting too deep for the decoder reported as a ValueError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _match(text: str, start: int, open_ch: str, close_ch: str) -> int | None:
    """Index just past the bracket that closes ``text[start]``, skipping string contents."""
    depth, in_str, esc = 0, False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == open_ch:
            depth += 1
        elif c == close_ch:
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _objects(text: str) -> Plan:
    """Every complete ``{...}`` in ``text`` that parses (also with ' for ") and names a tool."""
    found, i = [], text.find("{")
    while i != -1:
        end = _match(text, i, "{", "}")
        if end is None:
            break
        chunk = text[i:end]
        for candidate in (chunk, chunk.replace("'", '"')):
            try:
                obj = _loads(candidate)
            except ValueError:
                continue
            if isinstance(obj, dict) and TOOL_KEY in obj:
                found.append(obj)
            break
        i = text.find("{", end)
    return found


def parse_output(text: str) -> ParsedOutput:
    """Read the plan from a label or model output; never raises on a string input."""
    spans = thought_spans(text)
    thought, rest = split_thought(text)
    fence = FENCE_RE.search(rest)
    if fence:
        rest = fence.group(1)
    start = rest.find("[")
    if start == -1:
        plan = _objects(rest)
        return ParsedOutput(plan, "recovered" if plan else "failed", thought, "no JSON array")
    end = _match(rest, start, "[", "]")
    if end is None:
        plan = _objects(rest[start:])
        return ParsedOutput(plan, "recovered" if plan else "failed", thought, "unclosed JSON array")
    try:
        value = _loads(rest[start:end])
    except ValueError as exc:
        plan = _objects(rest)
        return ParsedOutput(plan, "recovered" if plan else "failed", thought, f"JSON does not parse: {exc}")
    outside = ("```json " if fence else "") + (rest[:start] + rest[end:]).strip()
    if not outside.strip() and spans and text[:spans[0][0]].strip():  # the plan came before the reasoning
        outside = "reasoning after the plan"
    non_objects = [i for i, a in enumerate(value) if not isinstance(a, dict)]
    plan = [a for a in value if isinstance(a, dict)]
    return ParsedOutput(plan, "parsed", thought, "", non_objects, outside.strip())
