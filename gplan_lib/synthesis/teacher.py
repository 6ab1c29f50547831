"""The offline expert teacher (stand-in for the paper's Qwen3-235B teacher, Sec. 3.2 and 4.1.1).

A policy from a context to a plan that follows the regularities of the released rows: at the
order POI the POI card comes first; a hotel/ticket order elsewhere in the same city starts with a
ride to the order and continues around the order destination; refuel/charging plans drive rather
than ride; evenings put food first; days off lengthen the plan with attractions or leisure.
``temperature`` 0 gives the modal plan; above 0 the teacher varies where a real teacher would
(plan length, second interest, weather position, start of the first interest, a reminder).
The reasoning path comes from ``reasoning.explain``.
"""
from __future__ import annotations

import random

from ..core.data import GsisrRow
from ..core.intents import END, HERE, ORDER_DEST, TAG, TOOL_KEY, Intent, Plan, interest, simple, travel
from ..core.planner import RowPlanner
from ..core.situation import Situation, situation_of
from .reasoning import Demonstration, explain
from .world import simulate_row


class ExpertTeacher(RowPlanner):
    """Programmatic expert: ``demonstrate(row, rng)`` gives plan + reasoning; ``plan(row)`` the modal plan."""

    def __init__(self, temperature: float = 0.0):
        if temperature < 0:
            raise ValueError("temperature must be >= 0")
        self.temperature = temperature

    def _vary(self, rng: random.Random | None, p: float) -> bool:
        return rng is not None and self.temperature > 0 and rng.random() < min(1.0, p * self.temperature)

    def plan(self, row: GsisrRow) -> Plan:
        return self.demonstrate(row).plan

    def demonstrate(self, row: GsisrRow, rng: random.Random | None = None) -> Demonstration:
        s = situation_of(row)
        anchor = self._anchor(s, rng)
        return explain(row, anchor + self._continuation(s, anchor, rng))

    def immediate_need(self, s: Situation) -> Intent:
        """The first intent of the modal plan: the most pressing need the context implies."""
        return self._anchor(s, None)[0]

    def _anchor(self, s: Situation, rng) -> list[Intent]:
        """The first, most pressing intents."""
        if s.at_order_poi and not s.energy:
            return [simple("tool_6")]
        if s.place == "lodging" and not (s.order == "酒店" and s.same_city_as_order):
            return [simple("tool_6")]
        if s.energy:
            if s.at_order_poi:
                return [travel("tool_2", "家" if s.in_home_city else ("公司" if s.in_work_city else "调用猜你去哪模型"))]
            if s.same_city_as_order:
                return [simple("tool_8")]
            if s.place == "scenic":
                return [simple("tool_6")]
            return [travel("tool_2", "调用猜你去哪模型")]
        if s.same_city_as_order:
            steps = [travel("tool_2" if s.place == "road" else "tool_1", ORDER_DEST)]
            if s.order in ("酒店", "门票") and not self._vary(rng, 0.25):
                steps.append(simple("tool_8"))
            return steps
        if s.order == "酒店":
            if s.place == "hub" and self._vary(rng, 0.5):
                return [simple("tool_3")]
            return [travel("tool_2" if s.place == "road" else "tool_1", ORDER_DEST), simple("tool_8")]
        return [travel("tool_1", "用户短期意向" if s.order == "门票" else "调用猜你去哪模型")]

    def first_tag(self, s: Situation, rng: random.Random | None = None) -> str:
        """The tag of the first interest: what the time and place call for."""
        if s.place == "scenic" and s.band in ("morning", "noon", "afternoon") and not s.at_order_poi:
            return "景点"
        if s.band == "late" and self._vary(rng, 0.3):
            return "休闲娱乐"
        return "美食"

    def _second_tag(self, s: Situation, first: str, rng) -> str:
        if s.day_off or s.order == "门票":
            options = ["景点", "休闲娱乐"]
        elif s.band in ("evening", "late"):
            options = ["休闲娱乐", "景点"]
        elif s.energy and not s.same_city_as_order:
            options = ["加油站" if s.order == "加油" else "充电站", "景点"]
        else:
            options = ["景点", "休闲娱乐", "购物"]
        options = [t for t in options if t != first] or ["购物"]
        return options[1] if len(options) > 1 and self._vary(rng, 0.3) else options[0]

    def _continuation(self, s: Situation, anchor: list[Intent], rng) -> list[Intent]:
        """Interests around where the user will be, then weather (and a second interest when long)."""
        heads_to_order = any(a.get(END) == ORDER_DEST for a in anchor)
        start = ORDER_DEST if heads_to_order and not self._vary(rng, 0.3) else HERE
        first = self.first_tag(s, rng)
        if anchor[-1][TOOL_KEY] == "tool_6" and first == "美食" and self._vary(rng, 0.2):
            steps = [{TOOL_KEY: "tool_7", TAG: "美食"}]
        else:
            steps = [interest(start, first)]
        second = self._second_tag(s, first, rng)
        extra = interest(HERE if second == "景点" else start, second)
        if s.day_off or len(anchor) == 1 or self._vary(rng, 0.8):
            tail = [simple("tool_9"), extra] if self._vary(rng, 0.4) else [extra, simple("tool_9")]
        else:
            tail = [simple("tool_9")]
        return steps + tail


def simulated_examples(n: int, seed: int = 0, temperature: float = 1.0) -> list[GsisrRow]:
    """``n`` rows of the simulated world labelled by the offline teacher (reasoning and plan in
    ``raw_labels``): what notebook 00 shows, said as such, when no released rows are present."""
    teacher, rng = ExpertTeacher(temperature), random.Random(seed)
    return [row.replace(raw_labels=teacher.demonstrate(row, rng).label())
            for row in (simulate_row(seed, i) for i in range(n))]
