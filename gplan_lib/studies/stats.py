"""Tests for comparisons between training runs evaluated on the same rows over several seeds.

The same test rows recur in every seed, and each seed's training is a random draw of its own, so per-row outcomes
pooled over seeds are not independent: a test that flips or resamples (row, seed) pairs one by one overstates the
evidence. Here the unit is respected: ``seed_sign_flip`` treats each seed's mean difference as one observation
(exact, over all 2^n sign assignments); ``hierarchical_bootstrap`` resamples seeds, then rows (a row keeps all its
seeds), so both the training and the row sampling vary; ``holm`` corrects a family of such tests.
"""
from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-adjusted p-values (step-down, monotone) for a family of tests."""
    order = sorted(p_values, key=p_values.get)
    out, running = {}, 0.0
    for i, name in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * p_values[name]))
        out[name] = running
    return out


def seed_sign_flip(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact two-sided p-value of the mean per-seed difference ``a - b`` under every sign assignment (the smallest
    reachable p is 2 / 2^n: 0.25 with 3 seeds, 0.002 with 10)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=d.size)))
    null = np.abs((signs * d).mean(axis=1))
    return float(np.mean(null >= abs(d.mean()) - 1e-12))


def hierarchical_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean difference of per-row outcomes ``a - b`` (arrays seeds x rows, the same rows and seeds in both) with a
    95% percentile interval and a two-sided bootstrap p-value, resampling seeds and then rows (each resampled row
    with all of the resampled seeds)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    n_seeds, n_rows = d.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    rows = rng.integers(0, n_rows, size=(n_boot, n_rows))
    per_seed = d[seeds]                                           # n_boot x n_seeds x n_rows
    stats = np.take_along_axis(per_seed, rows[:, None, :].repeat(n_seeds, axis=1), axis=2).mean(axis=(1, 2))
    lo, hi = np.percentile(stats, [2.5, 97.5])
    p = min(1.0, 2 * min(np.mean(stats <= 0), np.mean(stats >= 0)))
    return {"diff": float(d.mean()), "ci95": [float(lo), float(hi)], "p": float(p)}


def compare(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Both tests of one comparison on per-row outcomes (seeds x rows): the per-seed differences with their exact
    sign-flip p, and the hierarchical bootstrap's difference, interval and p."""
    per_seed = (np.asarray(a, float) - np.asarray(b, float)).mean(axis=1)
    return {"per_seed_diff": [round(float(x), 4) for x in per_seed],
            "seed_level_p": seed_sign_flip(np.asarray(a, float).mean(axis=1), np.asarray(b, float).mean(axis=1)),
            "bootstrap": hierarchical_bootstrap(a, b, seed=seed)}
