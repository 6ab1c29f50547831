"""Counterfactual context pairs (paper Sec. 4.2.1).

For an anchor context x, change only spatiotemporal variables (time of day, location/POI, city,
weekend, holiday) to get x', re-plan both with the teacher, and keep the pair when the plans
differ. Pairs are stored in both directions: under x the x-plan is chosen and the x'-plan
rejected; under x' the reverse. Every perturbation keeps the row self-consistent (weekend and
holiday flags follow the date; moving to the order POI also moves city and district).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Callable

from .data import GsisrRow
from .intents import describe_intent
from .parsing import parse_output
from .situation import CATEGORY_GROUPS, HOUR_BANDS, hour_band
from .teacher import ExpertTeacher
from .world import CITIES, CITY_NAMES, HOLIDAYS, ORDER_POI_TAG, time_cells

Perturbation = Callable[[GsisrRow, random.Random], GsisrRow | None]


def _at(row: GsisrRow, t: datetime) -> GsisrRow:
    return row.replace(**time_cells(t))


def other_hour(row: GsisrRow, rng: random.Random) -> GsisrRow | None:
    """Same day, an hour in another band (e.g. morning -> evening)."""
    now = row.time
    bands = [(lo, hi) for lo, hi, name in HOUR_BANDS if name != hour_band(now.hour)]
    lo, hi = rng.choice(bands)
    return _at(row, now.replace(hour=rng.randrange(lo, hi)))


def to_weekend(row: GsisrRow, rng: random.Random) -> GsisrRow | None:
    """The same hour on the nearest weekend day (None if it already is one)."""
    now = row.time
    if now.weekday() >= 5:
        return None
    return _at(row, now + timedelta(days=5 - now.weekday() + rng.randrange(2)))


def to_holiday(row: GsisrRow, rng: random.Random) -> GsisrRow | None:
    """The same hour on a public holiday (None if it already is one)."""
    now = row.time
    if now.date() in HOLIDAYS:
        return None
    d: date = rng.choice(sorted(HOLIDAYS))
    return _at(row, now.replace(year=d.year, month=d.month, day=d.day))


def move_location(row: GsisrRow, rng: random.Random) -> GsisrRow | None:
    """At the order POI -> somewhere else in the city; elsewhere -> at the order POI."""
    c = row.cells
    if c["current_poi_name"] == c["trigger_4"]:
        group = rng.choice(("shopping", "home_like", "dining", "scenic"))
        return row.replace(current_poi_name=f"p_{rng.randrange(1, 900_000)}",
                           current_tag=rng.choice(CATEGORY_GROUPS[group]))
    group = ORDER_POI_TAG.get(c["trigger_1"], "shopping")
    return row.replace(current_poi_name=c["trigger_4"], current_tag=rng.choice(CATEGORY_GROUPS[group]),
                       current_city=c["trigger_2"], current_district=c["trigger_3"])


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


def describe_pair(rec_x: dict, rec_xp: dict) -> tuple[dict[str, tuple[str, str]], dict[str, list[str]]]:
    """For display: the cells that differ between x and x', and both matched plans in English."""
    changed = {k: (rec_x["row"][k], rec_xp["row"][k]) for k in rec_x["row"] if rec_x["row"][k] != rec_xp["row"][k]}
    plans = {"plan matched to x": parse_output(rec_x["chosen"]).plan, "plan matched to x'": parse_output(rec_xp["chosen"]).plan}
    n = max(len(p) for p in plans.values())
    return changed, {k: [describe_intent(a) for a in p] + [""] * (n - len(p)) for k, p in plans.items()}
