"""The comparison tests of studies/stats.py: hand-computed cases, and their false-positive rate on simulated
seed studies with no difference between the runs (rows shared by both runs and every seed; each training seed of
each run its own random shift), beside the pooled per-(row, seed) McNemar test that ignores the design."""
from __future__ import annotations

import numpy as np
import pytest

from gplan_lib.studies.stats import compare, hierarchical_bootstrap, holm, mcnemar_exact, paired_t, sign_flip_test


def test_holm_hand_computed():
    # p sorted 0.01, 0.02, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.02), max(0.04, 1 x 0.04)
    assert holm({"a": 0.04, "b": 0.01, "c": 0.02}) == pytest.approx({"b": 0.03, "c": 0.04, "a": 0.04})
    assert holm({"a": 0.6, "b": 0.5})["a"] == 1.0  # capped, and never below an earlier adjusted value


def test_paired_t_hand_computed():
    # d = 1, 2, 3.5 - 1: differences 1, 1.5, 2.5; mean 5/3, sd 0.7638, t = 3.7796 on 2 df, p = 0.0634
    r = paired_t([1, 2, 3.5], [0, 0.5, 1])
    assert r["diff"] == pytest.approx(5 / 3) and r["t"] == pytest.approx(3.7796, abs=1e-4) and r["df"] == 2
    assert r["p"] == pytest.approx(0.0634, abs=1e-4)
    assert r["ci95"] == pytest.approx([5 / 3 - 4.3027 * 0.7638 / 3 ** 0.5, 5 / 3 + 4.3027 * 0.7638 / 3 ** 0.5], abs=1e-3)
    # no spread: all-zero differences are no evidence; equal non-zero ones get the exact sign-flip floor 2 / 2^n
    assert paired_t([1, 1], [1, 1])["p"] == 1.0 and paired_t([1] * 10, [0] * 10)["p"] == pytest.approx(2 / 1024)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        paired_t([1.0], [0.0])


def test_mcnemar_exact_by_hand():
    # 6 rows only A gets right, 1 only B: p = 2 * P(X <= 1 | n = 7, 1/2) = 2 * 8 / 128
    a = [1] * 6 + [0] + [1, 0, 1]
    b = [0] * 6 + [1] + [1, 0, 1]
    r = mcnemar_exact(a, b)
    assert (r["a_only"], r["b_only"]) == (6, 1) and r["p_value"] == pytest.approx(16 / 128)
    assert mcnemar_exact([1, 0], [1, 0])["p_value"] == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact([1, 0], [1])


def test_sign_flip_test_separates_a_shift_from_noise():
    rng = np.random.default_rng(0)
    b = rng.random(300)
    assert sign_flip_test(b + 0.1, b) < 0.01
    assert sign_flip_test(b + rng.normal(0, 0.1, 300), b) > 0.05


def test_bootstrap_of_a_constant_difference():
    b = np.random.default_rng(0).random((4, 30))
    out = hierarchical_bootstrap(b + 0.1, b, n_boot=200)
    assert out["diff"] == pytest.approx(0.1) and out["ci95"] == pytest.approx([0.1, 0.1])
    assert out["p"] == pytest.approx(2 / 201)  # add-one: never 0 from a finite number of resamples
    assert compare(b + 0.1, b, n_boot=200)["per_seed_diff"] == [0.1] * 4


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
        hits["seed level"] += paired_t(a.mean(1), b.mean(1))["p"] < 0.05
        hits["hierarchical bootstrap"] += hierarchical_bootstrap(a, b, n_boot=400, seed=k)["p"] < 0.05
        hits["pooled McNemar"] += mcnemar_exact(a.ravel(), b.ravel())["p_value"] < 0.05
    rate = {k: v / n for k, v in hits.items()}
    assert rate["seed level"] <= 0.09, rate          # near alpha, up to simulation noise
    assert rate["hierarchical bootstrap"] <= 0.10, rate
    assert rate["pooled McNemar"] > 0.3, rate         # the design ignored: far above alpha
