"""The judge of paper Sec. 5.3: three axes scored 1-5 from the context and a candidate plan only
(the judge never sees the target), their mean is Overall. Anchors per axis: 5 positive evidence,
4 sound with one clear positive signal, 3 no failure but generic (the default), 2 one explicit
failure, 1 systemic failure.

Two back-ends with one interface, ``judge(rows, plans) -> list[Verdict]``:

- ``OfflineJudge`` scores the axes from the simulated world's own knowledge (``situation``: the
  facts of a context, and the immediate need the world implies). Deterministic and free. It is not
  independent of the offline teacher - both encode the same world - so on synthetic data it
  measures agreement with the world's rules rather than an outside opinion of plan quality.
- ``LLMJudge`` sends the rubric and the candidate to an OpenAI-compatible server (the same client
  as the LLM teacher; temperature 0, cached) and parses the three scores strictly.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import partial
from typing import Sequence

import numpy as np

from ..core.data import GsisrRow
from ..core.intents import (ADMISSIBLE, END, ORDER_DEST, PREVIOUS_RESULT, START, TAG, TOOL_KEY, TOOLS, Plan,
                            describe_intent, dumps_plan)
from ..core.llm_client import ChatClient, Messages
from ..core.prompt import PromptOptions, user_message
from ..core.situation import Situation, situation_of
from ..synthesis.teacher import ExpertTeacher

AXES = ("flow", "logic", "st")
#: Service-lifecycle stage of each tool (Logic axis): arrival -> on-site -> post-service. The order
#: reminder and the weather fit anywhere and are left out of the ordering check.
STAGE = {"tool_1": 1, "tool_2": 1, "tool_3": 1, "tool_4": 1, "tool_5": 2, "tool_6": 2, "tool_7": 2, "tool_10": 3}
TRAVEL = ("tool_1", "tool_2")
PLACE_CARD_NONSENSE = ("road", "home_like", "work_like")


@dataclass
class Verdict:
    """Scores on the three axes (1-5), with the reasons behind each."""

    flow: int
    logic: int
    st: int
    reasons: dict[str, list[str]] = field(default_factory=dict)

    @property
    def overall(self) -> float:
        return (self.flow + self.logic + self.st) / 3

    def as_dict(self) -> dict[str, float]:
        return {"flow": self.flow, "logic": self.logic, "st": self.st, "overall": self.overall}


def anchored(failures: list[str], positives: list[str], strong: bool) -> int:
    """The five-level anchors: 2+ failures -> 1, one failure -> 2, none: 5 with strong positive
    evidence, 4 with a positive signal, else 3 (generic)."""
    if failures:
        return 1 if len(failures) >= 2 else 2
    if positives:
        return 5 if strong else 4
    return 3


class OfflineJudge:
    """The rubric applied with the simulated world's knowledge (see the module docstring)."""

    def __init__(self):
        self._world = ExpertTeacher()

    def flow(self, s: Situation, plan: Plan) -> tuple[int, list[str]]:
        """Does the first intent hit the immediate need, and do later ones continue it personally?"""
        anchor = self._world.immediate_need(s)
        first = plan[0] if plan else {}
        personal = [f"{describe_intent(a)} fits the moment" for a in plan[1:]
                    if a.get(TAG) == self._world.first_tag(s) or a.get(START) == ORDER_DEST]
        failures, positives = [], []
        if first == anchor:
            positives.append(f"first intent {describe_intent(first)} is the immediate need")
        elif first.get(TOOL_KEY) != anchor[TOOL_KEY]:
            failures.append(f"missed anchor: first is {describe_intent(first) if first else 'nothing'}, "
                            f"the moment calls for {describe_intent(anchor)}")
            if not personal and all(a.get(TOOL_KEY) != anchor[TOOL_KEY] for a in plan):
                failures.append("topic drift: the immediate need never appears and nothing is personalised")
        return anchored(failures, positives, strong=bool(personal)), failures + positives + personal

    def logic(self, s: Situation, plan: Plan) -> tuple[int, list[str]]:
        """Arrival -> on-site -> post-service order, and dependencies that resolve."""
        failures, stages = [], [STAGE.get(a.get(TOOL_KEY)) for a in plan]
        for j, stage in enumerate(stages):
            if stage is not None and any(p is not None and p > stage for p in stages[:j]):
                failures.append(f"stage inversion at intent {j + 1} ({describe_intent(plan[j])})")
        heading = False
        uses_dependency = False
        for a in plan:
            if a.get(START) == ORDER_DEST and a.get(TOOL_KEY) not in TRAVEL:
                if heading:
                    uses_dependency = True
                elif not s.at_order_poi:
                    failures.append(f"{describe_intent(a)} starts at the order destination before going there")
            if a.get(START) == PREVIOUS_RESULT:
                uses_dependency = True
            heading = heading or (a.get(TOOL_KEY) in TRAVEL and a.get(END) == ORDER_DEST)
        ordered = [x for x in stages if x is not None]
        progression = len(set(ordered)) >= 2
        positives = ["stages progress in order"] if progression else []
        positives += ["a later intent builds on an earlier one"] if uses_dependency else []
        return anchored(failures, positives, strong=progression and uses_dependency), failures + positives

    def st(self, s: Situation, plan: Plan) -> tuple[int, list[str]]:
        """Do tools and parameters fit the time, the POI and the order state?"""
        failures, positives = [], []
        tags = [a.get(TAG) for a in plan if a.get(TAG)]
        for a in plan:
            tool = a.get(TOOL_KEY)
            if tool in TRAVEL and a.get(END) == ORDER_DEST and s.at_order_poi:
                failures.append("travels to the order destination while already there")
            if tool == "tool_1" and (s.energy or s.place == "road"):
                failures.append("ride-hailing for a user who is driving")
            if tool == "tool_6" and s.place in PLACE_CARD_NONSENSE and not s.at_order_poi:
                failures.append(f"POI card at a {s.place} place")
        if ("加油站" in tags and s.order == "充电桩") or ("充电站" in tags and s.order == "加油"):
            failures.append("fuel type contradicts the order")
        if "景点" in tags and s.band in ("night", "late"):
            failures.append("attractions at night")
        anchor = self._world.immediate_need(s)
        travel = next((a for a in plan if a.get(TOOL_KEY) in TRAVEL), None)
        if travel is not None and anchor.get(TOOL_KEY) in TRAVEL and travel.get(END) == anchor.get(END):
            positives.append(f"travel target {describe_intent(travel)} fits the order state")
        if tags and tags[0] == self._world.first_tag(s):
            positives.append(f"first interest ({tags[0]}) fits the time and place")
        if any(a.get(TOOL_KEY) == "tool_8" for a in plan) and s.service_today:
            positives.append("order reminder on the service day")
        if any(a.get(TOOL_KEY) == "tool_6" for a in plan) and (s.at_order_poi or s.place == "lodging"):
            positives.append("POI card where the user is at a served POI")
        return anchored(failures, positives, strong=len(positives) >= 2), failures + positives

    def score(self, row: GsisrRow, plan: Plan) -> Verdict:
        s = situation_of(row)  # context columns only: the label is never read
        (f, rf), (lo, rl), (st, rs) = self.flow(s, plan), self.logic(s, plan), self.st(s, plan)
        reasons = {axis: r or ["no failure and no specific signal: generic"] for axis, r in
                   (("flow", rf), ("logic", rl), ("st", rs))}
        return Verdict(f, lo, st, reasons)

    def judge(self, rows: Sequence[GsisrRow], plans: Sequence[Plan]) -> list[Verdict]:
        return [self.score(r, p) for r, p in zip(rows, plans, strict=True)]


RUBRIC = """You judge a recommended sequence of intents (tool calls) for a map app user. You see the user's
context and the candidate plan, never a reference answer. Score three axes independently, 1-5.
Flow: does the first intent hit the user's most immediate need, and do later intents extend that anchor
with personalised signals? Positive: first intent matches the immediate anchor plus personalised
continuation. Failure: missed anchor or topic drift.
Logic: does the ordering follow a service lifecycle (urgent/certain -> arrival -> on-site -> post-service)
rather than an arbitrary permutation? Failure: stage inversion or dependency error.
Spatiotemporal (st): do tools, parameters and tag/range choices fit the current time, POI and order state,
or would they look the same in any context? Failure: parameter mismatch or ignored order/spatial state.
Levels per axis: 5 positive evidence on this axis; 4 sound, with one clear positive signal; 3 no failure
but generic / template-like (the default); 2 one explicit failure; 1 systemic failure or no shared goal.
Reply with one JSON object and nothing else: {"flow": <1-5>, "logic": <1-5>, "st": <1-5>}"""
JSON_OBJECT_RE = re.compile(r"\{[^{}]*\}")


class JudgeParseError(ValueError):
    """A judge reply that is not exactly the three integer scores."""


def without_think(text: str) -> str:
    """``text`` without its <think>...</think> blocks (as ``re.sub(r"<think>.*?</think>", "", text, flags=re.S)``,
    in one pass: that lazy pattern rescans the rest of the text from every unclosed <think>, 12.7 s at 136 KB)."""
    out, pos = [], 0
    while (start := text.find("<think>", pos)) >= 0 and (end := text.find("</think>", start + 7)) >= 0:
        out.append(text[pos:start])
        pos = end + len("</think>")
    out.append(text[pos:])
    return "".join(out)


def parse_scores(reply: str, row_id: str = "?") -> Verdict:
    """The scores in a judge reply: one JSON object with integer flow, logic and st in 1..5
    (a <think> block before it is ignored). Anything else raises ``JudgeParseError``."""
    found = JSON_OBJECT_RE.findall(without_think(reply))
    if len(found) != 1:
        raise JudgeParseError(f"row {row_id}: expected one JSON object in the judge reply, found {len(found)}: {reply[:120]!r}")
    try:
        obj = json.loads(found[0])
    except json.JSONDecodeError as exc:
        raise JudgeParseError(f"row {row_id}: judge reply is not JSON ({exc}): {found[0][:120]!r}") from None
    if set(obj) != set(AXES):
        raise JudgeParseError(f"row {row_id}: judge reply has keys {sorted(obj)}, need {list(AXES)}")
    bad = [k for k in AXES if not isinstance(obj[k], int) or isinstance(obj[k], bool) or not 1 <= obj[k] <= 5]
    if bad:
        raise JudgeParseError(f"row {row_id}: scores {bad} are not integers in 1..5: {obj}")
    return Verdict(obj["flow"], obj["logic"], obj["st"], {"llm": [reply]})


def shown_to_judge(plan: Plan) -> tuple[Plan, int]:
    """What the LLM judge sees of a candidate, and how many of its fields were left out: library tools only,
    each with its own parameters where the value is admissible - a closed vocabulary, so no text the candidate
    wrote (an unknown key, a free-text value, an instruction to the judge) reaches the judge's prompt."""
    shown, dropped = [], 0
    for intent in plan:
        tool = TOOLS.get(intent.get(TOOL_KEY)) if isinstance(intent.get(TOOL_KEY), str) else None
        kept = {} if tool is None else {TOOL_KEY: tool.name, **{k: intent[k] for k in tool.params
                                                                 if k in intent and intent[k] in ADMISSIBLE[k]}}
        dropped += len(intent) - len(kept)
        if kept:
            shown.append(kept)
    return shown, dropped


class LLMJudge:
    """The rubric as a prompt to an OpenAI-compatible chat server (temperature 0, cached)."""

    def __init__(self, client: ChatClient, options: PromptOptions = PromptOptions.named("compact")):
        if client.temperature != 0:
            raise ValueError("the judge runs at temperature 0 (paper Sec. 5.3)")
        self.client, self.options = client, options

    def messages(self, row: GsisrRow, plan: Plan) -> Messages:
        shown, dropped = shown_to_judge(plan)
        steps = "\n".join(f"{i}. {describe_intent(a)}" for i, a in enumerate(shown, 1))
        left_out = (f"\n({dropped} field(s) of the candidate are not valid library fields and are not shown: an "
                    "invalid plan)") if dropped else ""
        user = (f"# User context\n{user_message(row, self.options)}\n\n# Candidate plan\n{dumps_plan(shown)}\n"
                f"In words:\n{steps}{left_out}")
        return [{"role": "system", "content": RUBRIC}, {"role": "user", "content": user}]

    def judge(self, rows: Sequence[GsisrRow], plans: Sequence[Plan]) -> list[Verdict]:
        """Scores for each (row, plan); a reply that is not exactly the three scores is an error naming
        the row, and is not cached."""
        replies = self.client.complete_many([self.messages(r, p) for r, p in zip(rows, plans, strict=True)],
                                            desc="llm judge", validate=[partial(parse_scores, row_id=r.id) for r in rows])
        return [parse_scores(text, r.id) for r, text in zip(rows, replies)]


def summarise(verdicts: Sequence[Verdict]) -> dict[str, float]:
    """Mean of each axis and of Overall."""
    return {k: float(np.mean([v.as_dict()[k] for v in verdicts])) for k in (*AXES, "overall")}
