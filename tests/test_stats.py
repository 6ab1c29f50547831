"""The comparison tests of studies/stats.py: hand-computed cases, and their false-positive rate on simulated
seed studies with no difference between the runs (rows shared by both runs and every seed; each training seed of
each run its own random shift), beside the pooled per-(row, seed) McNemar test that ignores the design."""
from __future__ import annotations

import numpy as np
import pytest

from gplan_lib.studies.seed_study import mcnemar_exact
from gplan_lib.studies.stats import compare, hierarchical_bootstrap, holm, seed_sign_flip


def test_holm_hand_computed():
    # p sorted 0.01, 0.02, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.02), max(0.04, 1 x 0.04)
    assert holm({"a": 0.04, "b": 0.01, "c": 0.02}) == pytest.approx({"b": 0.03, "c": 0.04, "a": 0.04})
    assert holm({"a": 0.6, "b": 0.5})["a"] == 1.0  # capped, and never below an earlier adjusted value


def test_seed_sign_flip_hand_computed():
    # d = 1, 2, 3: of the 8 sign assignments only +++ and --- reach |mean| 2
    assert seed_sign_flip([1, 2, 3], [0, 0, 0]) == 0.25
    assert seed_sign_flip([1, 0], [0, 1]) == 1.0
    assert seed_sign_flip([1] * 10, [0] * 10) == pytest.approx(2 / 1024)


def test_bootstrap_of_a_constant_difference():
    b = np.random.default_rng(0).random((4, 30))
    out = hierarchical_bootstrap(b + 0.1, b, n_boot=200)
    assert out["diff"] == pytest.approx(0.1) and out["ci95"] == pytest.approx([0.1, 0.1]) and out["p"] == 0.0
    assert compare(b + 0.1, b)["per_seed_diff"] == [0.1] * 4


def _null_study(rng, seeds=10, rows=100, seed_sd=0.08):
    """Two runs with the same expected outcome on every row: Bernoulli(p_row + shift of that run's seed)."""
    p_row = rng.uniform(0.2, 0.8, rows)
    draw = lambda: (rng.random((seeds, rows)) < np.clip(p_row + rng.normal(0, seed_sd, (seeds, 1)), 0, 1)).astype(float)
    return draw(), draw()


def test_false_positive_rates_under_the_null():
    rng = np.random.default_rng(7)
    hits = {"seed level": 0, "hierarchical bootstrap": 0, "pooled McNemar": 0}
    n = 200
    for k in range(n):
        a, b = _null_study(rng)
        hits["seed level"] += seed_sign_flip(a.mean(1), b.mean(1)) < 0.05
        hits["hierarchical bootstrap"] += hierarchical_bootstrap(a, b, n_boot=400, seed=k)["p"] < 0.05
        hits["pooled McNemar"] += mcnemar_exact(a.ravel(), b.ravel())["p_value"] < 0.05
    rate = {k: v / n for k, v in hits.items()}
    assert rate["seed level"] <= 0.08, rate          # exact: at most alpha, up to simulation noise
    assert rate["hierarchical bootstrap"] <= 0.10, rate
    assert rate["pooled McNemar"] > 0.3, rate         # the design ignored: far above alpha
