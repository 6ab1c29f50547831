"""Input-side calibration of the simulated world (paper Sec. 3.2: the teacher labels *real* contexts; here the
world stands in for them, so its inputs should look like real rows, not only its labels).

``input_distributions`` reduces rows to one categorical distribution per input feature (order type, hour, day
type, cities, POI tags, history lengths and event types, blank profile fields); ``input_gaps`` is the total
variation distance per feature between two sets of rows (0: the same distribution, 1: disjoint);
``fit_world`` estimates ``WorldParams`` from real rows. Fit on training users only and measure the gaps on
users the fit never saw (``studies/sim_to_real``), beside the gap between two real samples, which is the floor a
finite sample leaves.
"""
from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import asdict
from typing import Any, Iterable, Sequence

from ..core.data import GsisrRow
from ..core.provenance import provenance
from ..core.situation import GROUP_OF
from ..evaluation.baseline_inputs import ACTS_RE, history_events
from .world import WorldParams, day_type, simulate_row

PROFILE_COLUMNS = tuple(f"profile_feat_{k}" for k in (1, 2, 3, 4, 6, 8, 9, 10, 11, 12, 13, 14))
ACT_RE = re.compile(r"act_\d+")
LONG_ITEM_RE = re.compile(r"(?:^|, )([^,]*?)的p_\d+")


PLACES = ("行中", "未知地点")  # "位于异地行中<category>", "位于未知地点<category>": history_events keeps them in the category


def _short_categories(text: str) -> list[str]:
    """The POI categories of the short-term behaviour events, the where-prefixes removed."""
    return [next((cat[len(p):] for p in PLACES if cat.startswith(p)), cat) for _, cat in history_events(text)]


def _long_items(text: str) -> list[str]:
    """The POI categories of the long-term behaviour items ("<category>的p_<id>act_k了<n>次 , ...")."""
    return [m.group(1).strip() for m in LONG_ITEM_RE.finditer(text.replace(" , ", ", "))]


def features(row: GsisrRow) -> dict[str, list[str]]:
    """The input features of one row, each a list of categorical values (most hold one; the history's event
    categories and acts hold one per event)."""
    c = row.cells
    at_order = c["current_poi_name"] == c["trigger_4"]
    short = _short_categories(c["short_term_behavior_seq"])
    return {
        "order type": [c["trigger_1"]],
        "at the order POI": [str(at_order)],
        "in the order city": [str(c["current_city"] == c["trigger_2"])],
        "order city is home": [str(c["trigger_2"] == c["profile_feat_5"])],
        "hour": [str(row.time.hour)],
        "day type": [day_type(row.time.date())],
        "order city": [c["trigger_2"]],
        "home city": [c["profile_feat_5"]],
        "POI tag": [c["current_tag"]],
        "POI group": [GROUP_OF.get(c["current_tag"], "other")],
        "short-term events": [str(len(short))],
        "long-term items": [str(len(_long_items(c["long_term_behavior"])))],
        "event categories": short + _long_items(c["long_term_behavior"]),
        "acts": [a for chain in ACTS_RE.findall(c["short_term_behavior_seq"]) for a in ACT_RE.findall(chain)],
        "blank profile fields": [col for col in PROFILE_COLUMNS if not c[col].strip()] or ["none"],
    }


def input_distributions(rows: Iterable[GsisrRow]) -> dict[str, Counter]:
    """Per feature, the counts of its values over ``rows``."""
    out: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        for name, values in features(row).items():
            out[name].update(values)
    return dict(out)


def tv_distance(a: Counter, b: Counter) -> float:
    """Total variation distance between two count distributions: half the L1 distance of their shares."""
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return float("nan")
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b))


def input_gaps(rows: Sequence[GsisrRow], real: Sequence[GsisrRow]) -> dict[str, float]:
    """Per feature, the total variation distance between ``rows`` and ``real`` (0 same, 1 disjoint)."""
    da, db = input_distributions(rows), input_distributions(real)
    return {name: round(tv_distance(da.get(name, Counter()), db[name]), 4) for name in db}


def _shares(counts: Counter, smooth: float = 0.0, keys: Iterable[str] = ()) -> dict[str, float]:
    keys = sorted(set(counts) | set(keys))
    total = sum(counts.values()) + smooth * len(keys)
    return {k: (counts[k] + smooth) / total for k in keys}


def _rate(hits: int, n: int) -> float:
    """A share with one pseudo-count each way (a type seen twice is not certain)."""
    return (hits + 1) / (n + 2)


def fit_world(rows: Sequence[GsisrRow]) -> WorldParams:
    """World parameters from real rows (use training users only): each field of ``WorldParams`` is the
    rows' empirical distribution of that input (rates smoothed by one pseudo-count each way, hours by half a
    count). Order types with no rows keep the built-in draws."""
    if not rows:
        raise ValueError("fit_world needs at least one row")
    by_order: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        by_order[r["trigger_1"]].append(r.cells)
    at = {o: [c["current_poi_name"] == c["trigger_4"] for c in cs] for o, cs in by_order.items()}
    elsewhere = {o: [c for c in cs if c["current_poi_name"] != c["trigger_4"]] for o, cs in by_order.items()}
    districts: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        c = r.cells
        districts[c["trigger_2"]].add(c["trigger_3"])
        districts[c["current_city"]].add(c["current_district"])
        if c["profile_feat_7"].startswith(c["profile_feat_5"]) and len(c["profile_feat_7"]) > len(c["profile_feat_5"]):
            districts[c["profile_feat_5"]].add(c["profile_feat_7"][len(c["profile_feat_5"]):])
    dist = input_distributions(rows)
    gappy = [r for r in rows if any(not r[col].strip() for col in PROFILE_COLUMNS)]  # profiles with a blank field
    return WorldParams(
        order_weights=_shares(Counter(r["trigger_1"] for r in rows)),
        at_order_poi={o: _rate(sum(v), len(v)) for o, v in at.items()},
        same_city={o: _rate(sum(c["current_city"] == c["trigger_2"] for c in cs), len(cs)) for o, cs in elsewhere.items()},
        p_order_in_home=_rate(sum(r["trigger_2"] == r["profile_feat_5"] for r in rows), len(rows)),
        hour_weights=[_shares(dist["hour"], 0.5, map(str, range(24)))[str(h)] for h in range(24)],
        day_types=_shares(dist["day type"]),
        home_cities=_shares(Counter(r["profile_feat_5"] for r in rows)),
        order_cities=_shares(Counter(r["trigger_2"] for r in rows) + Counter(r["current_city"] for r in rows)),
        districts={city: sorted(d) for city, d in sorted(districts.items())},
        place_tags={o: _shares(Counter(c["current_tag"] for c in cs)) for o, cs in elsewhere.items() if cs},
        order_tags={o: _shares(Counter(c["current_tag"] for c in cs if c["current_poi_name"] == c["trigger_4"]))
                    for o, cs in by_order.items() if any(at[o])},
        short_lengths=_shares(Counter(n for n in dist["short-term events"].elements() if n != "0")),
        long_lengths=_shares(Counter(n for n in dist["long-term items"].elements() if n != "0")),
        acts=_shares(dist["acts"]),
        event_categories=_shares(dist["event categories"]),
        p_full_profile=(len(rows) - len(gappy)) / len(rows),
        profile_empty={col: sum(not r[col].strip() for r in gappy) / max(1, len(gappy)) for col in PROFILE_COLUMNS},
    )


def user_folds(rows: Sequence[GsisrRow], k: int, seed: int = 0) -> list[set[str]]:
    """``k`` disjoint sets of user ids covering every row's id (a seeded shuffle, dealt round-robin)."""
    users = sorted({r.id for r in rows})
    if len(users) < k:
        raise ValueError(f"{len(users)} users cannot fill {k} folds")
    random.Random(seed).shuffle(users)
    return [set(users[i::k]) for i in range(k)]


def fold_gaps(rows: Sequence[GsisrRow], folds: Sequence[set[str]], n_sim: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Input gaps to each fold's held-out users (``folds``: sets of user ids), averaged over folds: of the
    built-in world, of the world fitted to the other folds' users, and of those real users themselves (what a
    finite sample leaves: no simulator fitted on them is expected to come closer)."""
    per_fold = []
    for held in folds:
        train, test = [r for r in rows if r.id not in held], [r for r in rows if r.id in held]
        fitted = fit_world(train)
        per_fold.append({"built-in world": input_gaps([simulate_row(seed, i) for i in range(n_sim)], test),
                         "calibrated world": input_gaps([simulate_row(seed, i, fitted) for i in range(n_sim)], test),
                         "real, other users": input_gaps(train, test)})
    names = list(per_fold[0]["built-in world"])
    mean = {src: {f: round(float(sum(p[src][f] for p in per_fold) / len(per_fold)), 4) for f in names}
            for src in per_fold[0]}
    return {"features": names, "mean": mean, "folds": len(folds), "n_sim": n_sim, "per_fold": per_fold,
            "provenance": provenance(),
            "distance": "total variation distance per feature (0: same distribution, 1: disjoint), to the held-out "
                        "users of each fold, averaged over folds"}


def world_json(params: WorldParams) -> dict[str, Any]:
    """The parameters as JSON-ready data (``WorldParams(**world_json(p)) == p``)."""
    return asdict(params)
