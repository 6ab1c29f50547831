"""A simulated Amap world that emits rows in the released 32-column GSISR format.

Users have a home and a work city/POI and are mostly on out-of-town trips; each row carries one
order (hotel, ticket, refuel, charging, other) whose triggers are filled consistently; the user
is somewhere (at the order POI, a lodging, a hub, a mall, ...) at some time. Marginals (order
types, being at the order POI, same city as the order, POI category groups, hours, behaviour
string shapes) are calibrated to the released calibration rows; dates vary over a year so that
weekend and holiday flags vary, which the released rows (one Tuesday) never do.
Every row is a pure function of (seed, index, world): chunks can be built in parallel, byte-identically.
``WorldParams`` replaces these built-in draws with distributions fitted to real rows (input-side calibration,
``synthesis/calibration.fit_world``); the default world is unchanged by it, draw for draw.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ..core.data import COLUMNS, TIME_FORMAT, GsisrRow
from ..core.situation import CATEGORY_GROUPS

#: City -> districts (public administrative names).
CITIES: dict[str, tuple[str, ...]] = {
    "北京市": ("朝阳区", "海淀区", "东城区"), "上海市": ("浦东新区", "徐汇区", "黄浦区"),
    "广州市": ("天河区", "越秀区", "番禺区"), "深圳市": ("南山区", "福田区", "宝安区"),
    "成都市": ("锦江区", "武侯区", "青羊区"), "杭州市": ("西湖区", "上城区", "滨江区"),
    "西安市": ("雁塔区", "碑林区", "未央区"), "重庆市": ("渝中区", "江北区", "南岸区"),
    "武汉市": ("武昌区", "江汉区", "洪山区"), "南京市": ("玄武区", "鼓楼区", "秦淮区"),
    "厦门市": ("思明区", "湖里区"), "青岛市": ("市南区", "崂山区"), "长沙市": ("岳麓区", "天心区"),
    "郑州市": ("金水区", "二七区"), "苏州市": ("姑苏区", "吴中区"), "昆明市": ("五华区", "盘龙区"),
    "东莞市": ("东莞市",), "佛山市": ("南海区", "禅城区"), "三亚市": ("吉阳区", "天涯区"),
    "桂林市": ("秀峰区", "阳朔县"), "洛阳市": ("老城区", "洛龙区"), "黄山市": ("屯溪区", "黟县"),
    "哈尔滨市": ("道里区", "南岗区"), "丽江市": ("古城区", "玉龙纳西族自治县"),
    "惠州市": ("惠城区", "惠阳区"), "合肥市": ("蜀山区", "包河区"), "济南市": ("历下区", "市中区"),
    "天津市": ("和平区", "河西区"), "宁波市": ("海曙区", "鄞州区"), "大理白族自治州": ("大理市",),
}
CITY_NAMES = tuple(CITIES)
ORDER_WEIGHTS = {"酒店": 0.53, "加油": 0.20, "其他": 0.11, "门票": 0.11, "充电桩": 0.05}
AT_ORDER_POI = {"酒店": 0.28, "门票": 0.17, "其他": 0.21, "加油": 0.12, "充电桩": 0.31}
SAME_CITY = {"酒店": 0.89, "门票": 0.93, "其他": 0.82, "加油": 0.53, "充电桩": 0.73}
#: Where users are when not at the order POI (category group weights, per order type).
PLACE_WEIGHTS = {
    "酒店": {"shopping": 58, "lodging": 31, "other": 31, "home_like": 21, "scenic": 13, "hub": 11, "dining": 8,
             "work_like": 6, "road": 3, "charging": 1, "fuel": 1},
    "门票": {"shopping": 9, "scenic": 8, "lodging": 8, "home_like": 6, "other": 5, "dining": 3, "hub": 2, "road": 1},
    "其他": {"shopping": 13, "lodging": 9, "work_like": 6, "home_like": 5, "other": 5, "dining": 2, "hub": 1,
             "charging": 1, "fuel": 1},
    "加油": {"shopping": 27, "road": 16, "home_like": 12, "other": 10, "lodging": 6, "scenic": 5, "dining": 4,
             "work_like": 3, "fuel": 2, "hub": 1},
    "充电桩": {"scenic": 5, "home_like": 3, "shopping": 3, "charging": 2, "work_like": 1, "lodging": 1, "road": 1},
}
ORDER_POI_TAG = {"酒店": "lodging", "门票": "scenic", "加油": "fuel", "充电桩": "charging"}
OTHER_TAGS = ("生活服务", "医院", "学校", "银行", "汽车维修")
#: Hour weights (0..23) shaped like the released rows (few at 1-4 h).
HOUR_WEIGHTS = (21, 8, 3, 2, 7, 12, 10, 22, 26, 26, 21, 29, 21, 31, 28, 27, 23, 23, 30, 28, 29, 29, 26, 19)
#: Approximate 2026 public holidays (New Year, Spring Festival, Qingming, Labour Day, Dragon Boat,
#: Mid-Autumn, National Day); a simulator needs variation, not an official calendar.
HOLIDAYS = frozenset(
    [date(2026, 1, 1)] + [date(2026, 2, 15) + timedelta(d) for d in range(9)] + [date(2026, 4, 4), date(2026, 4, 5)]
    + [date(2026, 5, 1) + timedelta(d) for d in range(5)] + [date(2026, 6, 19), date(2026, 9, 25)]
    + [date(2026, 10, 1) + timedelta(d) for d in range(7)])
WEEKDAY_ZH = "一二三四五六日"
ACTS = ("act_2", "act_4", "act_1", "act_7", "act_5", "act_6", "act_3")
ACT_WEIGHTS = (29, 26, 19, 12, 5, 4, 2)
BEHAVIOUR_CATEGORIES = ("商场", "高铁站", "宾馆酒店", "公园", "中餐", "写字楼", "住宅区", "加油站", "景区", "超市",
                        "小吃快餐", "机场", "医院", "网吧", "地铁站", "充电站", "咖啡厅", "电影院")


DAYS_2026 = tuple(date(2026, 1, 1) + timedelta(days=k) for k in range(365))


@dataclass(frozen=True)
class WorldParams:
    """Input distributions fitted to real rows (``calibration.fit_world``); a field left None keeps the
    built-in draw. Keys are strings so that the parameters round-trip through JSON and a manifest."""

    order_weights: dict[str, float] | None = None           # trigger_1
    at_order_poi: dict[str, float] | None = None            # order type -> P(current POI is the order's)
    same_city: dict[str, float] | None = None               # order type -> P(in the order city | not at its POI)
    p_order_in_home: float | None = None                    # P(order city is the home city)
    hour_weights: list[float] | None = None                 # 24 weights
    day_types: dict[str, float] | None = None               # workday / weekend / holiday
    home_cities: dict[str, float] | None = None             # profile_feat_5
    order_cities: dict[str, float] | None = None            # trigger_2 (and the city elsewhere)
    districts: dict[str, list[str]] | None = None           # city -> districts seen
    place_tags: dict[str, dict[str, float]] | None = None   # order type -> current_tag when not at the order POI
    order_tags: dict[str, dict[str, float]] | None = None   # order type -> current_tag at the order POI
    short_lengths: dict[str, float] | None = None           # events in short_term_behavior_seq
    long_lengths: dict[str, float] | None = None            # items in long_term_behavior
    acts: dict[str, float] | None = None                    # act_k in behaviour events
    event_categories: dict[str, float] | None = None        # POI categories in behaviour events
    p_full_profile: float | None = None                     # P(no profile field blank)
    profile_empty: dict[str, float] | None = None           # column -> share blank (given not a full profile)


DEFAULT_WORLD = WorldParams()


def is_holiday(d: date) -> bool:
    return d in HOLIDAYS


def day_type(d: date) -> str:
    return "holiday" if is_holiday(d) else ("weekend" if d.weekday() >= 5 else "workday")


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _districts(world: WorldParams, city: str) -> tuple[str, ...]:
    return tuple((world.districts or {}).get(city) or CITIES.get(city) or (city,))


def _city(rng: random.Random, world: WorldParams, weights: dict[str, float] | None, avoid: str | None = None) -> str:
    """A city from ``weights`` (the built-in list, uniform, when None), never ``avoid``."""
    if weights is None:
        return rng.choice([c for c in CITY_NAMES if c != avoid] if avoid else CITY_NAMES)
    options = {c: w for c, w in weights.items() if c != avoid}
    return _pick(rng, options) if options else rng.choice([c for c in CITY_NAMES if c != avoid])


def _blank(rng: random.Random, value: str, p_empty: float) -> str:
    return "" if rng.random() < p_empty else value


def _poi(rng: random.Random) -> str:
    return f"p_{rng.randrange(1, 900_000)}"


def _tag_of(rng: random.Random, group: str) -> str:
    return rng.choice(OTHER_TAGS if group == "other" else CATEGORY_GROUPS[group])


def _profile(rng: random.Random, home: str, work: str, world: WorldParams = DEFAULT_WORLD) -> dict[str, str]:
    full = world.p_full_profile is not None and rng.random() < world.p_full_profile
    empty = {c: 0.0 for c in world.profile_empty or {}} if full else world.profile_empty or {}

    def blank(value: str, p_empty: float, column: str) -> str:
        return _blank(rng, value, empty.get(column, p_empty))

    prefs = "|".join(f"pf_{k}:{rng.choice('高中低')}" for k in rng.sample(range(1, 110), rng.randint(1, 6)))
    counts = "|".join(f"pf_{k}:{rng.randint(1, 5)}" for k in rng.sample(range(15, 25), rng.randint(1, 2)))
    return {
        "profile_feat_1": blank(str(int(rng.random() < 0.74)), 0.06, "profile_feat_1"),
        "profile_feat_2": blank(str(rng.randint(1, 10)), 0.05, "profile_feat_2"),
        "profile_feat_3": blank(str(int(rng.random() < 0.66)), 0.2, "profile_feat_3"),
        "profile_feat_4": blank(str(int(rng.random() < 0.44)), 0.22, "profile_feat_4"),
        "profile_feat_5": home,
        "profile_feat_6": blank(_poi(rng), 0.07, "profile_feat_6"),
        "profile_feat_7": home + rng.choice(_districts(world, home)),
        "profile_feat_8": blank(_poi(rng), 0.11, "profile_feat_8"),
        "profile_feat_9": blank(work + rng.choice(_districts(world, work)), 0.11, "profile_feat_9"),
        "profile_feat_10": blank(str(int(rng.random() < 0.63)), 0.03, "profile_feat_10"),
        "profile_feat_11": blank(str(rng.randint(1, 4)), 0.26, "profile_feat_11"),
        "profile_feat_12": blank("|".join(str(rng.randint(1, 4)) for _ in range(rng.randint(1, 2))), 0.14,
                                 "profile_feat_12"),
        "profile_feat_13": blank(prefs, 0.12, "profile_feat_13"),
        "profile_feat_14": blank(counts, 0.28, "profile_feat_14"),
    }


def _length(rng: random.Random, lengths: dict[str, float] | None, p_full: float) -> int:
    """How many events a history holds: the fitted shares, else 10 with ``p_full``, else 1-9."""
    if lengths:
        return int(_pick(rng, lengths))
    return 10 if rng.random() < p_full else rng.randint(1, 9)


def _category(rng: random.Random, world: WorldParams) -> str:
    return _pick(rng, world.event_categories) if world.event_categories else rng.choice(BEHAVIOUR_CATEGORIES)


def _short_term(rng: random.Random, now: datetime, trip_start: datetime, order_poi: str, order_tag: str,
                world: WorldParams = DEFAULT_WORLD) -> str:
    """Up to 10 time-ordered events before ``now``: local before the trip, then during it."""
    n = _length(rng, world.short_lengths, 0.95)
    acts_from, act_weights = (tuple(world.acts), tuple(world.acts.values())) if world.acts else (ACTS, ACT_WEIGHTS)
    times = sorted(now - timedelta(minutes=rng.randint(30, 60 * 24 * 20)) for _ in range(n))
    events = []
    for k, t in enumerate(times):
        where = "本地" if t < trip_start - timedelta(days=1) else ("异地行前" if t < trip_start else "异地行中")
        where = "未知地点" if rng.random() < 0.09 else where
        acts = "&".join(f"{a}了" for a in sorted(set(rng.choices(acts_from, act_weights, k=rng.randint(1, 3)))))
        cat, poi = (order_tag, order_poi) if k == n - 1 and rng.random() < 0.3 else (_category(rng, world), _poi(rng))
        events.append(f"在{t.month}月{t.day}日周{WEEKDAY_ZH[t.weekday()]}{t.hour}点{acts}位于{where}{cat}的{poi}")
    return ", ".join(events)


def _long_term(rng: random.Random, home_poi: str, work_poi: str, world: WorldParams = DEFAULT_WORLD) -> str:
    n = _length(rng, world.long_lengths, 0.96)
    counts = sorted((rng.randint(2, 80) for _ in range(n)), reverse=True)
    items = []
    for k, c in enumerate(counts):
        cat, poi = ("住宅区", home_poi) if k == 0 and home_poi else (("写字楼", work_poi) if k == 1 and work_poi
                                                                     else (_category(rng, world), _poi(rng)))
        acts = "&".join(sorted(set(rng.choices(("act_8", "act_7", "act_4"), k=rng.randint(1, 2)))))
        items.append(f"{cat}的{poi}{acts}了{c}次")
    return " , ".join(items)


def _triggers(rng: random.Random, order: str, now: datetime) -> dict[str, str]:
    """trigger_5 (order time), trigger_6 (service start), trigger_7 (service end) by order type."""
    day = datetime(now.year, now.month, now.day)
    ordered = now - timedelta(minutes=rng.randint(5, 60 * 24 * 10))
    if order == "酒店":
        start = day + timedelta(days=rng.choices((0, 1, -1), (0.9, 0.08, 0.02))[0])
        end = start + timedelta(days=rng.choices((1, 2, 3), (0.9, 0.07, 0.03))[0])
    elif order == "门票":
        start = day + timedelta(days=rng.choices((0, 1), (0.83, 0.17))[0])
        end = start + timedelta(days=30)
    elif order == "其他":
        start = now - timedelta(minutes=rng.randint(0, 60 * 20))
        end = day + timedelta(days=rng.choice((7, 30, 90)), hours=23, minutes=59, seconds=59)
    else:  # refuel / charging: the transaction time, no end
        start = now - timedelta(minutes=rng.randint(1, 60 * 12))
        end = None
    return {"trigger_5": _blank(rng, ordered.strftime(TIME_FORMAT), 0.14),
            "trigger_6": start.strftime(TIME_FORMAT),
            "trigger_7": end.strftime(TIME_FORMAT) if end else ""}


def sample_time(rng: random.Random, world: WorldParams = DEFAULT_WORLD) -> datetime:
    """A moment in 2026: any day (weekday, weekend or holiday; or a day of a type drawn from the fitted
    shares), hours shaped like the released rows (or drawn from the fitted hours)."""
    if world.day_types:
        kind = _pick(rng, world.day_types)
        d = rng.choice([x for x in DAYS_2026 if day_type(x) == kind])
    else:
        d = date(2026, 1, 1) + timedelta(days=rng.randrange(365))
    hour = rng.choices(range(24), world.hour_weights or HOUR_WEIGHTS)[0]
    return datetime(d.year, d.month, d.day, hour, rng.randrange(60), rng.randrange(60))


def time_cells(t: datetime) -> dict[str, str]:
    """currenttime with weekend/holiday flags consistent with its date."""
    return {"currenttime": t.strftime(TIME_FORMAT), "weekendflag": str(int(t.weekday() >= 5)),
            "holidayflag": str(int(is_holiday(t.date())))}


def simulate_row(seed: int, index: int, world: WorldParams = DEFAULT_WORLD) -> GsisrRow:
    """Row ``index`` of the world with ``seed`` (a pure function of both and ``world``); raw_labels left empty."""
    rng = random.Random(seed * 1_000_003 + index)
    home = _city(rng, world, world.home_cities)
    work = home if rng.random() < 0.8 else _city(rng, world, world.home_cities)
    order = _pick(rng, world.order_weights or ORDER_WEIGHTS)
    # Most users travel: the order city is away from home (as in the released rows).
    in_home = 0.05 if world.p_order_in_home is None else world.p_order_in_home
    order_city = home if rng.random() < in_home else _city(rng, world, world.order_cities, avoid=home)
    order_district = rng.choice(_districts(world, order_city))
    now = sample_time(rng, world)
    trip_start = now - timedelta(hours=rng.randint(2, 24 * 4))
    order_poi = _poi(rng)
    at_order = rng.random() < (world.at_order_poi or AT_ORDER_POI).get(order, AT_ORDER_POI[order])
    same_city = at_order or rng.random() < (world.same_city or SAME_CITY).get(order, SAME_CITY[order])
    city = order_city if same_city else _city(rng, world, world.order_cities, avoid=order_city)
    district = order_district if at_order else rng.choice(_districts(world, city))
    tags = ((world.order_tags if at_order else world.place_tags) or {}).get(order)
    if at_order:
        poi = order_poi
        group = ORDER_POI_TAG.get(order, rng.choice(("shopping", "leisure", "other")))
    else:
        poi = _poi(rng)
        group = _pick(rng, PLACE_WEIGHTS[order])
    profile = _profile(rng, home, work, world)
    order_tag = {"酒店": "宾馆酒店", "门票": "景区", "加油": "加油站", "充电桩": "充电站"}.get(order, "生活服务")
    cells = dict.fromkeys(COLUMNS, "")
    cells.update(profile)
    cells.update(time_cells(now))
    cells.update({
        "id": str(10_000_000 + index),
        "short_term_behavior_seq": _short_term(rng, now, trip_start, order_poi, order_tag, world),
        "long_term_behavior": _long_term(rng, profile["profile_feat_6"], profile["profile_feat_8"], world),
        "current_poi_name": poi, "current_tag": _pick(rng, tags) if tags else _tag_of(rng, group),
        "current_city": city, "current_district": district,
        "trigger_1": order, "trigger_2": order_city, "trigger_3": order_district, "trigger_4": order_poi,
        **_triggers(rng, order, now),
    })
    return GsisrRow(cells)
