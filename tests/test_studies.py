"""The seed study's paired tests and summary, the likelihood-based context sensitivity, and the regime
study's prompt-only corpus."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gplan_lib.core.prompt import PromptOptions
from gplan_lib.sc_dpo.experiment import likelihood_sensitivity
from gplan_lib.studies.regimes import prompt_corpus
from gplan_lib.studies.seed_study import COMPARISONS, DPO_RUNS, PICD_RUNS, mcnemar_exact, sign_flip_test, summarise
from gplan_lib.training.modeling import add_latent_tokens, train_tokenizer


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


def test_summary_has_the_issue_shape():
    rng = np.random.default_rng(1)
    names = (*PICD_RUNS, *DPO_RUNS)
    per_seed = [{"seed": s, "scale": "x", "n_rows": 50,
                 "runs": {n: {"acc1": list(rng.integers(0, 2, 50).astype(float)), "ndcg3": list(rng.random(50)),
                              "nes": list(rng.random(50))} for n in names},
                 "sensitivity": {n: {"double_difference_positive": 0.5, "double_difference_mean": 0.0,
                                     "reward_accuracy": None} for n in ("PICD (CALR)", *DPO_RUNS)}}
                for s in (2, 0, 1)]
    out = summarise(per_seed)
    assert list(out["runs"]) == list(names)
    for n in names:
        assert out["runs"][n]["seeds"] == [0, 1, 2]
        assert out["runs"][n]["acc1"][0] == pytest.approx(np.mean(per_seed[1]["runs"][n]["acc1"]))
    assert set(out["paired"]) == {f"{a} vs {b}" for a, b in COMPARISONS}
    for v in out["paired"].values():
        assert v["n"] == 150 and 0 <= v["mcnemar_acc1"]["p_value"] <= 1


def test_double_difference_is_zero_for_a_context_blind_model_and_positive_for_a_sensitive_one():
    records = [{"pair_id": "p1", "direction": "x"}, {"pair_id": "p1", "direction": "x'"},
               {"pair_id": "p2", "direction": "x"}, {"pair_id": "p2", "direction": "x'"}]
    # context-blind: log pi(y_a|.) = -3, log pi(y_b|.) = -5 under both contexts
    blind = likelihood_sensitivity(np.array([-3.0, -5.0, -3.0, -5.0]), np.array([-5.0, -3.0, -5.0, -3.0]), records)
    assert blind["double_difference_mean"] == 0 and blind["double_difference_positive"] == 0
    assert blind["preference_accuracy"] == 0.5  # by construction, whatever the model
    # sensitive: each plan more likely under its own context (DD = 2 + 2 for p1; p2 reversed)
    sens = likelihood_sensitivity(np.array([-3.0, -3.0, -5.0, -5.0]), np.array([-5.0, -5.0, -3.0, -3.0]), records,
                                  ref=(np.full(4, -4.0), np.full(4, -4.0)))
    assert sens["double_difference_positive"] == 0.5 and sens["double_difference_mean"] == 0.0
    assert sens["reward_accuracy"] == 0.5 and sens["dd_pairs"] == 2
    assert math.isclose(likelihood_sensitivity(np.array([-3.0, -3.0]), np.array([-5.0, -5.0]),
                                               records[:2])["double_difference_mean"], 4.0)


def test_pretraining_corpus_holds_prompts_only():
    opts = PromptOptions.named("tiny")
    from gplan_lib.core.prompt import build_messages
    from gplan_lib.synthesis.world import simulate_row
    tok = train_tokenizer([m["content"] for i in range(20) for m in build_messages(simulate_row(7, i), opts)], 600)
    add_latent_tokens(tok)
    corpus = prompt_corpus(tok, opts, world_seed=7, n=5, max_len=4096)
    for ids in corpus:
        text = tok.decode(ids)
        assert text.rstrip().endswith("assistant") and "工具名称" not in text and "THOUGHT" not in text
