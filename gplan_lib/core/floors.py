"""Two floors every planner must beat: the majority plan and a three-rule plan (Sec. 5 baselines
are in notebook 04; these need no training)."""
from __future__ import annotations

from collections import Counter
from typing import Sequence

from .data import GsisrRow
from .intents import HERE, ORDER_DEST, Plan, dumps_plan, interest, loads_plan, simple, travel
from .planner import RowPlanner
from .situation import situation_of


class MajorityPlan(RowPlanner):
    """Always the most frequent whole plan of the rows it was fitted on (ties: first seen)."""

    def __init__(self, train_plans: Sequence[Plan]):
        if not train_plans:
            raise ValueError("MajorityPlan needs at least one training plan")
        counts = Counter(dumps_plan(p) for p in train_plans)
        self.text = counts.most_common(1)[0][0]

    def plan(self, row: GsisrRow) -> Plan:
        return loads_plan(self.text)


class ThreeRulePlan(RowPlanner):
    """At the order POI: the POI card first; refuel/charging: drive on; else: ride to the order."""

    def plan(self, row: GsisrRow) -> Plan:
        s = situation_of(row)
        if s.at_order_poi:
            return [simple("tool_6"), interest(HERE, "美食"), interest(HERE, "景点"), simple("tool_9")]
        if s.energy:
            return [travel("tool_2", "调用猜你去哪模型"), interest(HERE, "美食"), simple("tool_9"), interest(HERE, "景点")]
        return [travel("tool_1", ORDER_DEST), simple("tool_8"), interest(ORDER_DEST, "美食"), simple("tool_9")]
