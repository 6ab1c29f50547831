"""Structured reasoning paths R (paper Sec. 4.1.1) for a plan in its context.

<CONTEXT> states the facts the plan depends on (order, at the order POI or not, place, hour band,
day type, same city, home/work city); <STRATEGY> names the anchor and how the plan continues;
each <STEP_i> justifies intent i from those facts. Used by the offline teacher for its own plans
and by ``gplan rationalize`` for released JSON-only labels.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.data import GsisrRow
from ..core.intents import END, RANGE, START, TAG, TOOL_KEY, Intent, Plan, dumps_plan
from ..core.situation import Situation, situation_of

ORDER_ZH = {"酒店": "酒店订单", "加油": "加油订单", "充电桩": "充电订单", "门票": "门票订单", "其他": "其他订单"}
PLACE_ZH = {"lodging": "住宿类POI", "hub": "交通枢纽", "road": "高速服务区/收费站", "fuel": "加油站", "charging": "充电站",
            "scenic": "景区", "dining": "餐饮类POI", "shopping": "商圈/商场", "leisure": "休闲娱乐场所",
            "home_like": "住宅区", "work_like": "办公区", "other": "普通POI"}
BAND_ZH = {"night": "凌晨", "morning": "上午", "noon": "中午", "afternoon": "下午", "evening": "傍晚", "late": "深夜"}
PLACE_VALUE_ZH = {"当前位置": "当前位置", "订单目的地": "订单目的地", "前一位推荐结果": "上一步推荐的地点", "家": "家",
                  "公司": "公司", "用户短期意向": "用户近期想去的地点", "调用猜你去哪模型": "预测的目的地"}
STRATEGY_ZH = {
    "tool_1": "先解决出行（打车），再围绕到达地推荐后续服务，最后补充天气等辅助信息。",
    "tool_2": "先导航出行，再推荐沿途或到达后的服务。",
    "tool_3": "跨城出行先安排长途交通，再安排到达后的住宿与周边。",
    "tool_4": "先给出周边公交，再推荐周边服务。",
    "tool_5": "直接从兴趣推荐切入，再补充出行与辅助信息。",
    "tool_6": "以用户所在POI的到店卡片为锚点，再推荐周边生活服务，最后补充天气。",
    "tool_7": "先推荐附近一个具体地点，再展开周边推荐。",
    "tool_8": "先提醒订单，再安排出行与周边服务。",
    "tool_9": "先看天气，再安排出行与周边。",
    "tool_10": "先邀请评价刚去过的地方，再推荐后续服务。",
}


def context_text(s: Situation, row: GsisrRow) -> str:
    """The <CONTEXT> block: the intermediate facts the plan depends on."""
    where = "就在订单POI" if s.at_order_poi else f"位于{PLACE_ZH[s.place]}（{row['current_tag']}），不在订单POI"
    city = "与订单同城" if s.same_city_as_order else f"与订单不同城（当前{row['current_city']}，订单{row['trigger_2']}）"
    home = "在常驻城市" if s.in_home_city else "处于异地出行中"
    work = "，当前城市是工作地" if s.in_work_city else ""
    day = "节假日" if s.holiday else ("周末" if s.weekend else "工作日")
    service = "服务今天开始" if s.service_today else "服务不在今天开始"
    return (f"用户有一个{ORDER_ZH.get(s.order, s.order)}，{service}；当前{row.time:%H}点（{BAND_ZH[s.band]}，{day}），"
            f"{where}，{city}，{home}{work}。")


def explain_step(a: Intent, s: Situation, i: int) -> str:
    """Why intent ``a`` at position ``i`` (0-based) fits the situation."""
    tool = a.get(TOOL_KEY)
    first = "最迫切的需求是" if i == 0 else "接着"
    if tool in ("tool_1", "tool_2"):
        mode = "打车" if tool == "tool_1" else ("在高速上自驾，导航" if s.place == "road" else "驾车导航")
        end = PLACE_VALUE_ZH.get(a.get(END, ""), a.get(END, ""))
        why = "补能完成后离开，" if s.energy and s.at_order_poi else ("订单在外地，" if not s.same_city_as_order else "")
        return f"{why}{first}{mode}从{PLACE_VALUE_ZH.get(a.get(START, ''), '')}前往{end}。"
    if tool == "tool_5":
        timing = f"{BAND_ZH[s.band]}时段" + ("、休息日" if s.day_off else "")
        return (f"{timing}，{first}以{PLACE_VALUE_ZH.get(a.get(START, ''), '')}为起点，"
                f"在{a.get(RANGE, '')}范围推荐{a.get(TAG, '')}。")
    if tool == "tool_6":
        why = "用户已到达订单POI" if s.at_order_poi else f"用户正在{PLACE_ZH[s.place]}停留"
        return f"{why}，{first}展示当前所在POI的到店卡片。"
    if tool == "tool_7":
        return f"{first}在附近推荐一个具体的{a.get(TAG, '')}地点。"
    if tool == "tool_8":
        return f"{first}提醒{ORDER_ZH.get(s.order, '订单')}的时间与凭证信息。"
    return {"tool_3": f"{first}安排长途交通。", "tool_4": f"{first}查看周边公交。",
            "tool_9": "出行相关，补充查看天气。", "tool_10": "邀请用户为刚去过的地方写评价。"}.get(
        str(tool), f"{first}调用{tool}。")


@dataclass
class Demonstration:
    """A teacher sample: context analysis, strategy and the plan, with one STEP per intent."""

    situation: Situation
    context: str
    strategy: str
    plan: Plan

    def reasoning(self) -> str:
        """The structured reasoning path R of Sec. 4.1.1."""
        steps = "".join(f"<STEP_{i}>{explain_step(a, self.situation, i - 1)}</STEP_{i}>"
                        for i, a in enumerate(self.plan, 1))
        return f"<THOUGHT><CONTEXT>{self.context}</CONTEXT><STRATEGY>{self.strategy}</STRATEGY>{steps}</THOUGHT>"

    def label(self) -> str:
        """What goes into raw_labels: the reasoning, then the compact JSON plan."""
        return self.reasoning() + dumps_plan(self.plan)


def explain(row: GsisrRow, plan: Plan, strategy: str | None = None) -> Demonstration:
    """A Demonstration for ``plan`` in ``row``'s context (strategy from the anchor tool if not given)."""
    s = situation_of(row)
    anchor = plan[0].get(TOOL_KEY) if plan else None
    return Demonstration(s, context_text(s, row), strategy or STRATEGY_ZH.get(str(anchor), "按需求顺序安排意图。"), plan)
