"""The regime grid's one-factor contrasts, tested with the training seed as the unit (paper Sec. 5.4's claims about
start, learning rate, schedule and the SC-DPO terms of Eq. 9-12, at the grid's scale)."""
from __future__ import annotations

from typing import Any, Sequence

from .stats import holm, paired_t


def _pairs(cells: dict[str, Any], match) -> list[tuple[str, str]]:
    """(A, B) names of ``cells`` for which ``match(a, b)`` holds, in the cells' order."""
    return [(a, b) for a, va in cells.items() for b, vb in cells.items() if a != b and match(va, vb)]


def contrasts(picd: dict[str, Any], dpo: dict[str, Any], lrs: Sequence[float], metric: str = "acc1") -> dict[str, Any]:
    """Each one-factor contrast of the grid on ``metric``, the training seed as the unit: a paired t-test over the
    seeds both sides have (at least 2; ``stats.paired_t``), Holm-adjusted over every contrast here. PICD: pretrained
    vs scratch (same eta_struct and schedule); each smaller eta_struct vs the first of ``lrs`` (same start and
    schedule); CALR vs cosine, CALR vs constant, cosine vs constant (same start and eta_struct). DPO, per base: each
    run vs the base, SC-DPO vs vanilla, and each SC-DPO ablation vs SC-DPO."""
    same = lambda va, vb, *keys: all(va[k] == vb[k] for k in keys)
    schedule_pairs = {("calr", "cosine"), ("calr", "constant"), ("cosine", "constant")}
    families = {
        "start": _pairs(picd, lambda a, b: (a["start"], b["start"]) == ("pretrained", "scratch")
                        and same(a, b, "eta_struct", "schedule")),
        "eta_struct": _pairs(picd, lambda a, b: a["eta_struct"] != lrs[0] and b["eta_struct"] == lrs[0]
                             and same(a, b, "start", "schedule")),
        "schedule": _pairs(picd, lambda a, b: (a["schedule"], b["schedule"]) in schedule_pairs
                           and same(a, b, "start", "eta_struct")),
        "DPO": _pairs(dpo, lambda a, b: same(a, b, "base") and (
            (b["variant"] == "base") or (a["variant"], b["variant"]) == ("sc", "vanilla")
            or (a["variant"].startswith("sc-") and b["variant"] == "sc"))),
    }
    out: dict[str, Any] = {}
    for family, pairs in families.items():
        cells = dpo if family == "DPO" else picd
        for a, b in pairs:
            va, vb = cells[a], cells[b]
            seeds = [s for s in va["seeds"] if s in vb["seeds"]]
            x = [va["per_seed"][metric][va["seeds"].index(s)] for s in seeds]
            y = [vb["per_seed"][metric][vb["seeds"].index(s)] for s in seeds]
            if len(seeds) >= 2 and None not in x + y:
                out[f"{a} vs {b}"] = {"family": family, "seeds": seeds,
                                      "per_seed_diff": [round(u - v, 4) for u, v in zip(x, y)], **paired_t(x, y)}
    adjusted = holm({k: v["p"] for k, v in out.items()})
    for k, v in out.items():
        v["p_holm"] = adjusted[k]
    return {"metric": metric, "test": (f"paired t over the seeds both sides have (the training seed as the unit), "
                                       f"Holm over all {len(out)} contrasts"), "by_contrast": out}
