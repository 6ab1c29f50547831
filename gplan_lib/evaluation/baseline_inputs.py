"""What the Table 1 baselines see of a row (paper Sec. 5.1.1): the context as categorical tokens (the
row's own columns, or as an ablation the facts the simulated world derives from them), the recent
behaviour history, P5's word sequence, and a plan reduced to its tool ids."""
from __future__ import annotations

import re

from ..core.data import GsisrRow
from ..core.intents import TOOL_KEY, TOOLS, Plan
from ..core.situation import situation_of

ACTS_RE = re.compile(r"act_\d+了(?:&act_\d+了)*+")  # possessive: a chain is matched once, never re-tried
WHERE_RE = re.compile(r"位于(本地|异地行前|异地)?")
PLACE_END = "的p_"


def history_events(text: str) -> list[tuple[str, str]]:
    r"""(where, category) of each behaviour event, as ``re.findall(r"act_\d+了(?:&act_\d+了)*位于(本地|异地行前|异地)?
    (.*?)的p_", text)`` finds them, in one pass. That pattern rescans the rest of the text from every event head
    without a place (19.8 s at 273 KB), and from every link of a chain of actions not followed by "位于" (238 s at
    1 MB). Here a chain is read once: if no "位于" follows it, no head starts inside it either."""
    events, pos = [], 0
    while (acts := ACTS_RE.search(text, pos)) is not None:
        where = WHERE_RE.match(text, acts.end())
        if where is None:
            pos = acts.end()
            continue
        end = text.find(PLACE_END, where.end())
        if end < 0:  # no place after this head, so none after any later one
            break
        events.append((where.group(1) or "", text[where.end():end]))
        pos = end + len(PLACE_END)
    return events


def history_tokens(row: GsisrRow, last: int = 5) -> list[str]:
    """The categories of the user's last ``last`` short-term behaviour events (the sequence a
    sequential recommender normally consumes), oldest first."""
    events = history_events(row["short_term_behavior_seq"])
    return [f"hist={where}{cat}" for where, cat in events[-last:]]


#: How a baseline sees the context: ``raw`` - the row's own columns as tokens (what the students read,
#: as text); ``facts`` - the facts the simulated world derives from them (``core/situation.py``: whether the
#: user is at the order's POI, in the order's city, ...), which the students must work out themselves.
FEATURES = ("raw", "facts")
RAW_COLUMNS = ("trigger_1", "current_tag", "current_city", "trigger_2", "current_poi_name", "trigger_4",
               "weekendflag", "holidayflag", "profile_feat_5", "profile_feat_7", "profile_feat_9")


def context_tokens(row: GsisrRow, features: str = "raw") -> list[str]:
    """The context as categorical tokens, then the recent behaviour history."""
    if features == "raw":
        facts = {c: row[c] for c in RAW_COLUMNS} | {"hour": row.time.hour}
    elif features == "facts":
        s = situation_of(row)
        facts = {"order": s.order, "at_order_poi": s.at_order_poi, "place": s.place, "band": s.band,
                 "same_city": s.same_city_as_order, "home_city": s.in_home_city, "work_city": s.in_work_city,
                 "weekend": s.weekend, "holiday": s.holiday, "service_today": s.service_today, "tag": row["current_tag"]}
    else:
        raise ValueError(f"unknown feature set {features!r}; choose one of {FEATURES}")
    facts |= {f"pf{i}": row[f"profile_feat_{i}"] for i in (1, 2, 3, 4, 10, 11)}
    return [f"{k}={v}" for k, v in facts.items()] + history_tokens(row)


def context_words(row: GsisrRow, features: str = "raw") -> list[str]:
    """P5's input: the same tokens as a natural-language-like word sequence."""
    words = []
    for tok in context_tokens(row, features):
        key, _, value = tok.partition("=")
        words += [key.replace("_", " "), ":", value, ";"]
    return words


def tool_sequence(plan: Plan) -> list[str]:
    """A plan reduced to its atomic intent ids (tool names; unknown tools dropped)."""
    return [str(a.get(TOOL_KEY)) for a in plan if a.get(TOOL_KEY) in TOOLS]
