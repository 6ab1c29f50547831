"""A noisy teacher mode: the mistakes an LLM teacher makes (paper Sec. 3.2 filters them out).

Each mistake is applied to a correct demonstration and names the filter rule expected to catch it,
so the synthesis report can show both the rejection breakdown and whether the filter caught
every injected mistake (and nothing else).
"""
from __future__ import annotations

import random
from typing import Callable

from ..core.intents import END, PREVIOUS_RESULT, START, TAG, TOOL_KEY, dumps_plan
from .reasoning import Demonstration

Mistake = Callable[[Demonstration, random.Random], str]


def _with_plan(demo: Demonstration, plan: list) -> str:
    """Label text whose JSON is ``plan`` while the reasoning keeps the original steps."""
    return demo.reasoning() + dumps_plan(plan)


def out_of_enum_tag(demo, rng):
    plan = [dict(a) for a in demo.plan]
    tagged = [a for a in plan if TAG in a] or [plan[-1]]
    rng.choice(tagged)[TAG] = rng.choice(["咖啡", "超市", "公园", "KTV", "火锅"])
    return _with_plan(demo, plan)


def duplicate_intent(demo, rng):
    plan = list(demo.plan)
    i = rng.randrange(len(plan))
    plan[-1] = plan[i] if i != len(plan) - 1 else plan[0]
    return _with_plan(demo, plan)


def two_ride_hailing(demo, rng):
    plan = list(demo.plan)
    extra = {TOOL_KEY: "tool_1", START: "当前位置", END: rng.choice(["家", "公司", "订单目的地"])}
    if not any(a.get(TOOL_KEY) in ("tool_1", "tool_2", "tool_4") for a in plan):
        plan[0] = {TOOL_KEY: "tool_2", START: "当前位置", END: "订单目的地"}
    plan[-1] = extra
    return _with_plan(demo, plan)


def dangling_reference(demo, rng):
    plan = [dict(a) for a in demo.plan]
    plan[0] = {TOOL_KEY: "tool_5", START: PREVIOUS_RESULT, "空间范围": "附近", TAG: "美食"}
    return _with_plan(demo, plan)


def broken_json(demo, rng):
    text = dumps_plan(demo.plan)
    return demo.reasoning() + (text[: rng.randrange(len(text) // 2, len(text) - 1)] if rng.random() < 0.7
                               else text.replace("},{", "},,{", 1))


def step_count_mismatch(demo, rng):
    """The reasoning loses its last STEP block."""
    text = demo.reasoning()
    return text[: text.index(f"<STEP_{len(demo.plan)}>")] + "</THOUGHT>" + dumps_plan(demo.plan)


def poi_name_as_value(demo, rng):
    plan = [dict(a) for a in demo.plan]
    with_end = [a for a in plan if END in a]
    if with_end:
        with_end[0][END] = f"p_{rng.randrange(1, 900000)}"
    else:
        plan[0] = {TOOL_KEY: "tool_1", START: "当前位置", END: f"p_{rng.randrange(1, 900000)}"}
    return _with_plan(demo, plan)


def too_short(demo, rng):
    return _with_plan(demo, demo.plan[:3])


#: Mistake -> (weight, the rule expected to catch it).
MISTAKES: dict[str, tuple[Mistake, float, str]] = {
    "out_of_enum_tag": (out_of_enum_tag, 0.22, "inadmissible_value"),
    "duplicate_intent": (duplicate_intent, 0.14, "duplicate_intent"),
    "two_ride_hailing": (two_ride_hailing, 0.14, "mutual_exclusion"),
    "dangling_reference": (dangling_reference, 0.1, "dangling_reference"),
    "broken_json": (broken_json, 0.12, "json_parse"),
    "step_count_mismatch": (step_count_mismatch, 0.1, "step_count"),
    "poi_name_as_value": (poi_name_as_value, 0.1, "inadmissible_value"),
    "too_short": (too_short, 0.08, "plan_length"),
}


def corrupt(demo: Demonstration, rng: random.Random) -> tuple[str, str]:
    """One LLM-like mistake applied to ``demo``: (label text, mistake name)."""
    names = list(MISTAKES)
    name = rng.choices(names, weights=[MISTAKES[n][1] for n in names])[0]
    return MISTAKES[name][0](demo, rng), name

