"""The intent library E (paper Sec. 3.1) exactly as the released GSISR labels use it.

A plan Y = (a_1..a_n) is a JSON array of flat objects. Each object names its tool under
``工具名称`` and lists its parameters after it in a fixed (canonical) order. Labels are stored
compactly: Chinese keys, canonical key order, no spaces (``[{"工具名称":"tool_9"}]``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping, Sequence

TOOL_KEY = "工具名称"
START, END, RANGE, TAG = "起始位置", "终点位置", "空间范围", "tag"

PARAM_GLOSS = {TOOL_KEY: "tool", START: "start", END: "end", RANGE: "range", TAG: "tag"}

#: Value that refers to the result of the intent right before it (paper Sec. 3.2, tier iii).
PREVIOUS_RESULT = "前一位推荐结果"
#: Parameter values that are references to an earlier intent's result.
REFERENCE_VALUES = frozenset({PREVIOUS_RESULT})

START_VALUES = ("当前位置", PREVIOUS_RESULT, "订单目的地")
END_VALUES = START_VALUES + ("家", "公司", "用户短期意向", "调用猜你去哪模型")
RANGE_VALUES = ("附近", "商圈", "全城")
TAG_VALUES = ("美食", "购物", "酒店", "景点", "休闲娱乐", "运动健身", "丽人", "加油站", "充电站", "停车场")

ADMISSIBLE: dict[str, tuple[str, ...]] = {START: START_VALUES, END: END_VALUES, RANGE: RANGE_VALUES, TAG: TAG_VALUES}

VALUE_GLOSS = {
    "当前位置": "current location", PREVIOUS_RESULT: "previous intent's result",
    "订单目的地": "order destination", "家": "home", "公司": "workplace",
    "用户短期意向": "short-term intended place", "调用猜你去哪模型": "guess-where-you-go model",
    "附近": "nearby", "商圈": "business district", "全城": "whole city",
    "美食": "food", "购物": "shopping", "酒店": "hotel", "景点": "attraction",
    "休闲娱乐": "leisure", "运动健身": "sports/fitness", "丽人": "beauty",
    "加油站": "gas station", "充电站": "EV charging", "停车场": "parking",
}


@dataclass(frozen=True)
class Tool:
    """One tool of the library: its id, Chinese name, English gloss and parameters in order."""

    name: str
    zh: str
    gloss: str
    params: tuple[str, ...]
    #: Whether the tool's result is a place that a later ``前一位推荐结果`` can refer to.
    produces_place: bool


TOOLS: dict[str, Tool] = {t.name: t for t in (
    Tool("tool_1", "打车", "ride-hailing", (START, END), True),
    Tool("tool_2", "出行", "trip / navigation", (START, END), True),
    Tool("tool_3", "长途交通", "long-distance transport", (), False),
    Tool("tool_4", "周边公交", "nearby public transit", (), False),
    Tool("tool_5", "兴趣推荐", "interest recommendation", (START, RANGE, TAG), True),
    Tool("tool_6", "单poi真实到店展示", "card of the POI the user is at", (), True),
    Tool("tool_7", "附近单poi推荐", "one nearby POI", (TAG,), True),
    Tool("tool_8", "订单提醒", "order reminder", (), False),
    Tool("tool_9", "查天气", "weather", (), False),
    Tool("tool_10", "写评价", "write a review", (), False),
)}

#: At most one intent of this group per plan (ride-hailing, trip, nearby transit).
MUTUAL_EXCLUSION = frozenset({"tool_1", "tool_2", "tool_4"})

#: Plan length bounds. The system prompt asks for plans longer than 3; the latent
#: scaffold has step slots T_1..T_9 (Sec. 4.1.2), so 9 is the longest plan it can hold.
MIN_PLAN_LEN, MAX_PLAN_LEN = 4, 9

Intent = dict[str, str]
Plan = list[Intent]


#: The two places plans start from most.
HERE, ORDER_DEST = "当前位置", "订单目的地"
#: The spatial range each interest tag is recommended in.
RANGE_FOR = {"美食": "附近", "景点": "全城", "休闲娱乐": "商圈", "购物": "商圈", "酒店": "全城", "加油站": "附近",
             "充电站": "附近", "停车场": "附近", "丽人": "附近", "运动健身": "附近"}


def travel(tool: str, end: str) -> Intent:
    """A travel intent (ride-hailing, trip, transit) from here to ``end``."""
    return {TOOL_KEY: tool, START: HERE, END: end}


def interest(start: str, tag: str) -> Intent:
    """An interest recommendation of ``tag`` around ``start`` in the tag's usual range."""
    return {TOOL_KEY: "tool_5", START: start, RANGE: RANGE_FOR[tag], TAG: tag}


def simple(tool: str) -> Intent:
    """An intent without parameters."""
    return {TOOL_KEY: tool}


def canonical_intent(intent: Mapping[str, str]) -> Intent:
    """Reorder an intent's keys canonically (tool first, then the tool's parameters in order).

    Keys the tool does not define are kept after the known ones so nothing is lost.
    """
    tool = TOOLS.get(str(intent.get(TOOL_KEY, "")))
    order = [TOOL_KEY, *(tool.params if tool else ())]
    out = {k: intent[k] for k in order if k in intent}
    out.update({k: v for k, v in intent.items() if k not in out})
    return out


def dumps_plan(plan: Sequence[Mapping[str, str]]) -> str:
    """Serialise a plan the way the released labels are stored (compact, canonical order)."""
    return json.dumps([canonical_intent(a) for a in plan], ensure_ascii=False, separators=(",", ":"))


def loads_plan(text: str) -> Plan:
    """Parse a compact JSON plan; raises ``ValueError`` if it is not a list of objects."""
    plan = json.loads(text)
    if not isinstance(plan, list) or not all(isinstance(a, dict) for a in plan):
        raise ValueError("a plan is a JSON array of objects")
    return plan


def describe_intent(intent: Mapping[str, str]) -> str:
    """An English one-liner for display, e.g. ``ride-hailing(start=current location, end=order destination)``."""
    tool = TOOLS.get(str(intent.get(TOOL_KEY)))
    head = tool.gloss if tool else str(intent.get(TOOL_KEY))
    args = ", ".join(f"{PARAM_GLOSS.get(k, k)}={VALUE_GLOSS.get(str(v), v)}"
                     for k, v in canonical_intent(intent).items() if k != TOOL_KEY)
    return f"{head}({args})" if args else head


def library_table() -> list[dict[str, str]]:
    """The library as rows for display: tool, Chinese name, gloss, parameters and their values."""
    rows = []
    for t in TOOLS.values():
        params = "; ".join(f"{PARAM_GLOSS[p]} ∈ {{{', '.join(ADMISSIBLE[p])}}}" for p in t.params)
        rows.append({"tool": t.name, "name": t.zh, "gloss": t.gloss, "parameters": params or "-",
                     "exclusive group": "yes" if t.name in MUTUAL_EXCLUSION else "",
                     "produces a place": "yes" if t.produces_place else ""})
    return rows
