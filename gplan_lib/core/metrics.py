"""Offline metrics of paper Sec. 5.1.2, defined exactly as the released evaluation computes them.

- Acc@1: the first predicted intent equals the first gold intent (tool and every parameter).
- NDCG@3: binary relevance, 1 when predicted intent i's (tool, tag) matches any gold intent
  (a missing tag matches a missing tag); DCG over the first 3 predictions, IDCG over
  min(3, |gold|) ideal hits; not clipped (it can exceed 1 when |gold| < 3, as released).
- NES (Eq. 14): 1 - D / max(|pred|, |gold|), D the weighted Levenshtein distance with
  insertion/deletion 1.0, a different tool 1.0, the same tool with other parameters 0.3.
A parse failure scores 0 on all three. Added here: rule validity (the strict filter: nothing but the
reasoning block and the JSON array, then every tier) and 95% bootstrap intervals, and
tool-level scores (parameters dropped on both sides), the way the paper scores the baselines that
emit no parameter slots (Sec. 5.1.1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .intents import TAG, TOOL_KEY
from .parsing import parse_output
from .rule_filter import check_parsed
from .scaffold import latent_valid

INS_DEL, TOOL_SUB, PARAM_SUB = 1.0, 1.0, 0.3
METRICS = ("acc1", "ndcg3", "nes")


def acc_at_1(pred: Sequence[Mapping], gold: Sequence[Mapping]) -> float:
    """1.0 when both plans are non-empty and their first intents are identical dicts."""
    return float(bool(pred) and bool(gold) and bool(pred[0]) and dict(pred[0]) == dict(gold[0]))


def _tool_tag(intent: Mapping) -> tuple[Any, Any]:
    return intent.get(TOOL_KEY), intent.get(TAG)


def ndcg_at_3(pred: Sequence[Mapping], gold: Sequence[Mapping], k: int = 3) -> float:
    """Binary (tool, tag) relevance against the set of gold intents; no de-duplication."""
    if not gold:
        return 0.0
    gold_keys = [_tool_tag(g) for g in gold]
    dcg = sum(1.0 / math.log2(i + 2) for i, p in enumerate(pred[:k]) if _tool_tag(p) in gold_keys)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(gold))))
    return dcg / idcg


def _sub_cost(a: Mapping, b: Mapping) -> float:
    if dict(a) == dict(b):
        return 0.0
    return PARAM_SUB if a.get(TOOL_KEY) == b.get(TOOL_KEY) else TOOL_SUB


def edit_distance(pred: Sequence[Mapping], gold: Sequence[Mapping]) -> float:
    """Weighted Levenshtein distance between two plans (Sec. 5.1.2)."""
    prev = [j * INS_DEL for j in range(len(gold) + 1)]
    for i, p in enumerate(pred, 1):
        cur = [i * INS_DEL] + [0.0] * len(gold)
        for j, g in enumerate(gold, 1):
            cur[j] = min(prev[j] + INS_DEL, cur[j - 1] + INS_DEL, prev[j - 1] + _sub_cost(p, g))
        prev = cur
    return prev[-1]


def nes(pred: Sequence[Mapping], gold: Sequence[Mapping]) -> float:
    """Normalised edit similarity (Eq. 14), clipped to [0, 1]; both empty -> 1, one empty -> 0."""
    if not pred and not gold:
        return 1.0
    if not pred or not gold:
        return 0.0
    d = edit_distance(pred, gold)
    return min(1.0, max(0.0, 1.0 - d / (max(len(pred), len(gold)) * max(INS_DEL, TOOL_SUB))))


def score_sample(output: str, gold: Sequence[Mapping], latent: bool = False, tools: bool = False) -> dict[str, float]:
    """All per-sample scores of one raw model output against a gold plan (the output is parsed
    once); with ``latent``, also Latent-Valid (Sec. 5.1.3); with ``tools``, the tool-level scores."""
    parsed = parse_output(output)
    pred = parsed.plan
    scores = {"acc1": 0.0, "ndcg3": 0.0, "nes": 0.0} if not pred else {
        "acc1": acc_at_1(pred, gold), "ndcg3": ndcg_at_3(pred, gold), "nes": nes(pred, gold)}
    if tools:
        scores.update(tool_level(pred, gold))
    scores["validity"] = float(not check_parsed(parsed, strict=True))
    if latent:
        scores["latent_valid"] = float(latent_valid(output, len(pred))[0])
    return scores


def tool_level(pred: Sequence[Mapping], gold: Sequence[Mapping]) -> dict[str, float]:
    """Acc@1, NDCG@3 and NES on tool names only (``tool_acc1``, ``tool_ndcg3``, ``tool_nes``)."""
    p, g = [{TOOL_KEY: a.get(TOOL_KEY)} for a in pred], [{TOOL_KEY: a.get(TOOL_KEY)} for a in gold]
    return {"tool_acc1": acc_at_1(p, g), "tool_ndcg3": ndcg_at_3(p, g), "tool_nes": nes(p, g)}


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling samples with replacement)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


@dataclass
class Scores:
    """Mean metrics over a set of samples with their bootstrap intervals."""

    n: int
    means: dict[str, float]
    ci: dict[str, tuple[float, float]]
    per_sample: list[dict[str, float]]

    def fmt(self, key: str) -> str:
        """``mean [lo, hi]`` of one metric, for tables."""
        lo, hi = self.ci[key]
        return f"{self.means[key]:.3f} [{lo:.3f}, {hi:.3f}]"

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n, **self.means}
        out["ci95"] = {k: list(v) for k, v in self.ci.items()}
        return out


def aggregate(per_sample: Sequence[Mapping[str, float]], seed: int = 0, n_boot: int = 1000) -> Scores:
    """Means and intervals of per-sample score dicts (all with the same keys)."""
    keys = list(per_sample[0]) if per_sample else [*METRICS, "validity"]
    means = {k: float(np.mean([s[k] for s in per_sample])) if per_sample else math.nan for k in keys}
    ci = {k: bootstrap_ci([s[k] for s in per_sample], n_boot=n_boot, seed=seed) for k in keys}
    return Scores(len(per_sample), means, ci, [dict(s) for s in per_sample])


def score_outputs(outputs: Iterable[str], golds: Iterable[Sequence[Mapping]], seed: int = 0) -> Scores:
    """Score raw model outputs against gold plans, pairwise and in order."""
    return aggregate([score_sample(o, g) for o, g in zip(outputs, golds, strict=True)], seed=seed)


