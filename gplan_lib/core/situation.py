"""The intermediate facts a plan depends on (paper Sec. 3.1: spatiotemporal context s and the
event triggers), read off a GSISR row. The teacher reasons over them, the simulated world is
built to make them vary, and the offline judge scores plans against them."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .data import TIME_FORMAT, GsisrRow

#: POI categories (current_tag values seen in the released rows) grouped by what they imply.
CATEGORY_GROUPS: dict[str, tuple[str, ...]] = {
    "lodging": ("经济型", "舒适型", "快捷酒店", "民宿", "商务酒店", "高档型", "旅馆", "豪华型", "度假酒店",
                "公寓式酒店", "电竞酒店", "青年旅舍", "客栈", "农家院", "住宿服务,宾馆酒店,宾馆酒店"),
    "hub": ("高铁站", "火车站", "机场", "长途汽车站", "站前广场"),
    "road": ("服务区", "收费站"),
    "fuel": ("加油站",),
    "charging": ("充电站",),
    "scenic": ("5A景区", "4A景区", "景区", "名山丘陵", "湿地公园", "文物古迹", "植物园", "自然风光", "古镇",
               "寺庙", "公园", "风景名胜,公园广场,城市广场"),
    "dining": ("小吃快餐", "中餐", "鲁菜", "粤菜", "自助餐", "西餐", "甜品店", "美食街", "生煎", "粥",
               "餐饮服务,餐饮相关场所,餐饮相关"),
    "shopping": ("商场", "商圈", "特色街区", "日杂店", "农贸市场", "特产", "购物服务,特色商业街,步行街"),
    "leisure": ("台球厅", "棋牌室", "KTV", "电影院", "酒吧"),
    "home_like": ("住宅区", "商住两用"),
    "work_like": ("写字楼", "公司", "工业园区"),
}
GROUP_OF = {tag: g for g, tags in CATEGORY_GROUPS.items() for tag in tags}

HOUR_BANDS = ((0, 6, "night"), (6, 11, "morning"), (11, 14, "noon"), (14, 17, "afternoon"),
              (17, 21, "evening"), (21, 24, "late"))


def hour_band(hour: int) -> str:
    return next(name for lo, hi, name in HOUR_BANDS if lo <= hour < hi)


@dataclass(frozen=True)
class Situation:
    """Facts of one context that decide the plan."""

    order: str                 # trigger_1: 酒店 / 加油 / 充电桩 / 门票 / 其他
    at_order_poi: bool         # current POI is the order's POI (trigger_4)
    place: str                 # category group of the current POI (see CATEGORY_GROUPS) or "other"
    hour: int
    band: str                  # hour band
    same_city_as_order: bool   # current city is the order city
    in_home_city: bool         # current city is the home city (profile_feat_7 starts with it)
    in_work_city: bool
    weekend: bool
    holiday: bool
    service_today: bool        # the order's service starts today (trigger_6)

    @property
    def trip(self) -> bool:
        """Away from home: the out-of-town trip the released rows are mostly about."""
        return not self.in_home_city

    @property
    def energy(self) -> bool:
        return self.order in ("加油", "充电桩")

    @property
    def day_off(self) -> bool:
        return self.weekend or self.holiday


def situation_of(row: GsisrRow) -> Situation:
    c = row.cells
    now = row.time
    city = c["current_city"]
    service = c["trigger_6"]
    service_today = bool(service) and datetime.strptime(service, TIME_FORMAT).date() == now.date()
    return Situation(
        order=c["trigger_1"],
        at_order_poi=bool(c["trigger_4"]) and c["current_poi_name"] == c["trigger_4"],
        place=GROUP_OF.get(c["current_tag"], "other"),
        hour=now.hour, band=hour_band(now.hour),
        same_city_as_order=city == c["trigger_2"],
        in_home_city=bool(city) and c["profile_feat_7"].startswith(city),
        in_work_city=bool(city) and c["profile_feat_9"].startswith(city),
        weekend=c["weekendflag"] == "1", holiday=c["holidayflag"] == "1",
        service_today=service_today,
    )
