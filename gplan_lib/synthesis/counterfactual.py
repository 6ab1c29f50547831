"""Counterfactual context pairs (paper Sec. 4.2.1).

For an anchor context x, change only spatiotemporal variables (time of day, location/POI, city,
weekend, holiday) to get x', re-plan both with the teacher, and keep the pair when the plans
differ. Pairs are stored in both directions: under x the x-plan is chosen and the x'-plan
rejected; under x' the reverse. Every perturbation keeps the row self-consistent and changes only
the facts it names (``INTENDED_FACTS``): a new date moves the order's times and the dated behaviour
events with it, so the order's service day stays "today" when it was; the weekend day keeps the
holiday status and the holiday keeps the weekend status; a move to the order POI happens within
the order city.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Callable

from ..core.data import TIME_FORMAT, GsisrRow
from ..core.situation import CATEGORY_GROUPS, HOUR_BANDS, hour_band
from .teacher import ExpertTeacher
from .world import CITIES, CITY_NAMES, HOLIDAYS, ORDER_POI_TAG, WEEKDAY_ZH, is_holiday, time_cells

Perturbation = Callable[[GsisrRow, random.Random], GsisrRow | None]


TRIGGER_TIMES = ("trigger_5", "trigger_6", "trigger_7")
EVENT_RE = re.compile(r"在(\d{1,2})月(\d{1,2})日周(.)")


def _at(row: GsisrRow, t: datetime) -> GsisrRow:
    return row.replace(**time_cells(t))


def _shift_events(seq: str, now: datetime, days: int) -> str:
    """Move every dated behaviour event ("在M月D日周W") by ``days``, keeping its weekday right.
    An event's year is the latest one that puts it at or before ``now``."""
    def move(m: re.Match) -> str:
        d = date(now.year, int(m.group(1)), int(m.group(2)))
        d = d if d <= now.date() else d.replace(year=now.year - 1)
        d += timedelta(days=days)
        return f"在{d.month}月{d.day}日周{WEEKDAY_ZH[d.weekday()]}"
    return EVENT_RE.sub(move, seq)


def _on_day(row: GsisrRow, day: date) -> GsisrRow:
    """The same moment on another ``day``: the order's times (trigger_5/6/7) and the dated behaviour
    events move by the same number of days, so that only the calendar flags can change (the order
    still starts today if it did, the trip is as long as it was)."""
    now = row.time
    delta = timedelta(days=(day - now.date()).days)
    shifted = {k: (datetime.strptime(row[k], TIME_FORMAT) + delta).strftime(TIME_FORMAT)
               for k in TRIGGER_TIMES if row[k]}
    return row.replace(**time_cells(now + delta), **shifted,
                       short_term_behavior_seq=_shift_events(row["short_term_behavior_seq"], now, delta.days))


def other_hour(row: GsisrRow, rng: random.Random) -> GsisrRow | None:
    """Same day, an hour in another band (e.g. morning -> evening)."""
    now = row.time
    bands = [(lo, hi) for lo, hi, name in HOUR_BANDS if name != hour_band(now.hour)]
    lo, hi = rng.choice(bands)
    return _at(row, now.replace(hour=rng.randrange(lo, hi)))


def to_weekend(row: GsisrRow, rng: random.Random) -> GsisrRow | None:
    """The nearest weekend day with the same holiday status (None if it already is a weekend day)."""
    today = row.time.date()
    if today.weekday() >= 5:
        return None
    days = [today + timedelta(days=5 - today.weekday() + k) for k in range(2)]
    days = [d for d in days if is_holiday(d) == is_holiday(today)]
    return _on_day(row, rng.choice(days)) if days else None


def to_holiday(row: GsisrRow, rng: random.Random) -> GsisrRow | None:
    """A public holiday of the same day type, weekday or weekend (None if it already is a holiday)."""
    today = row.time.date()
    if is_holiday(today):
        return None
    days = [d for d in sorted(HOLIDAYS) if (d.weekday() >= 5) == (today.weekday() >= 5)]
    return _on_day(row, rng.choice(days)) if days else None


def move_location(row: GsisrRow, rng: random.Random) -> GsisrRow | None:
    """At the order POI -> another POI in the same city and district; elsewhere in the order city ->
    at the order POI (None when the user is in another city: that move would change the city too)."""
    c = row.cells
    if c["current_poi_name"] == c["trigger_4"]:
        group = rng.choice(("shopping", "home_like", "dining", "scenic"))
        return row.replace(current_poi_name=f"p_{rng.randrange(1, 900_000)}",
                           current_tag=rng.choice(CATEGORY_GROUPS[group]))
    if c["current_city"] != c["trigger_2"]:
        return None
    group = ORDER_POI_TAG.get(c["trigger_1"], "shopping")
    return row.replace(current_poi_name=c["trigger_4"], current_tag=rng.choice(CATEGORY_GROUPS[group]),
                       current_district=c["trigger_3"])


def change_city(row: GsisrRow, rng: random.Random) -> GsisrRow | None:
    """Same city as the order -> another city, and the reverse (never at the order POI)."""
    c = row.cells
    if c["current_poi_name"] == c["trigger_4"]:
        return None
    if c["current_city"] == c["trigger_2"]:
        city = rng.choice([x for x in CITY_NAMES if x != c["trigger_2"]])
    else:
        city = c["trigger_2"]
    return row.replace(current_city=city, current_district=rng.choice(CITIES.get(city, (c["current_district"],))))


PERTURBATIONS: dict[str, Perturbation] = {
    "time": other_hour, "weekend": to_weekend, "holiday": to_holiday, "location": move_location, "city": change_city,
}
#: The facts of ``situation.Situation`` each perturbation may change; the first one it always changes.
#: (Where the user is decides the POI's category group; which city decides home/work-city facts.)
INTENDED_FACTS: dict[str, tuple[str, ...]] = {
    "time": ("band", "hour"), "weekend": ("weekend",), "holiday": ("holiday",),
    "location": ("at_order_poi", "place"), "city": ("same_city_as_order", "in_home_city", "in_work_city"),
}


@dataclass
class PreferencePair:
    """One direction of a counterfactual pair: under ``row`` prefer ``chosen`` over ``rejected``."""

    pair_id: str
    direction: str          # "x" (anchor context) or "x'" (counterfactual context)
    perturbation: str
    row: GsisrRow
    chosen: str             # teacher label matched to row (reasoning + plan)
    rejected: str           # teacher label matched to the other context

    def as_record(self) -> dict:
        return {"pair_id": self.pair_id, "direction": self.direction, "perturbation": self.perturbation,
                "row": self.row.cells, "chosen": self.chosen, "rejected": self.rejected}


def make_pairs(row: GsisrRow, rng: random.Random, teacher: ExpertTeacher | None = None,
               kinds: tuple[str, ...] = tuple(PERTURBATIONS)) -> list[PreferencePair]:
    """Both directions of the first perturbation (in random order) whose teacher plans differ."""
    teacher = teacher or ExpertTeacher()
    x_demo = teacher.demonstrate(row)
    for kind in rng.sample(list(kinds), len(kinds)):
        cf = PERTURBATIONS[kind](row, rng)
        if cf is None:
            continue
        cf_demo = teacher.demonstrate(cf)
        if cf_demo.plan != x_demo.plan:
            pid = f"{row.id}:{kind}"
            return [PreferencePair(pid, "x", kind, row, x_demo.label(), cf_demo.label()),
                    PreferencePair(pid, "x'", kind, cf, cf_demo.label(), x_demo.label())]
    return []
