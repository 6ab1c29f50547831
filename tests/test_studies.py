"""The seed study's tests, summary and per-row file, the likelihood-based context sensitivity, the regime grid
(its prompt-only corpus, launches and summary) and the paper's claims with verdicts."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from gplan_lib.core.prompt import PromptOptions
from gplan_lib.sc_dpo.experiment import likelihood_sensitivity
from gplan_lib.studies.regimes import prompt_corpus
from gplan_lib.studies.seed_study import (DPO_RUNS, PICD_RUNS, TESTED, outcomes, paired_tests, read_rows, summarise,
                                         write_rows)
from gplan_lib.studies.stats import holm
from gplan_lib.training.modeling import add_latent_tokens, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def _per_seed(rng, seeds=(2, 0, 1), n_rows=50):
    names = (*PICD_RUNS, *DPO_RUNS)
    return [{"seed": s, "scale": "x", "n_rows": n_rows, "row_ids": [f"t{i:03d}" for i in range(n_rows)],
             "runs": {n: {"acc1": list(rng.integers(0, 2, n_rows).astype(float)), "ndcg3": list(rng.random(n_rows)),
                          "nes": list(rng.random(n_rows)), "validity": list(rng.integers(0, 2, n_rows).astype(float)),
                          "latent_valid": list(rng.integers(0, 2, n_rows).astype(float))} for n in names},
             "sensitivity": {n: {"double_difference_positive": 0.5, "double_difference_mean": 0.0,
                                 "reward_accuracy": None, "logp_chosen_mean": -3.0 - s}
                             for n in ("PICD (CALR)", *DPO_RUNS)}}
            for s in seeds]


def test_summary_has_the_issue_shape():
    per_seed = _per_seed(np.random.default_rng(1))
    out = summarise(per_seed)
    names = (*PICD_RUNS, *DPO_RUNS)
    assert list(out["runs"]) == list(names)
    for n in names:
        assert out["runs"][n]["seeds"] == [0, 1, 2]
        assert out["runs"][n]["latent_valid"][0] == pytest.approx(np.mean(per_seed[1]["runs"][n]["latent_valid"]))
    expected = {f"{a} vs {b} / {m}" for m, pairs in TESTED.items() for a, b in pairs}
    assert set(out["paired"]) == expected and len(expected) == 2 * 8 + 3
    assert {"PICD (cosine) vs PICD (constant) / acc1", "+ SC-DPO vs + Vanilla DPO / nes",
            "+ Vanilla DPO vs PICD (CALR) / acc1"} <= expected
    raw = {f"{k} / {t}": v[t]["p"] for k, v in out["paired"].items() for t in ("seed_t", "bootstrap")}
    adjusted = holm(raw)  # Holm over all 38 tests, each never below its raw p
    for k, v in out["paired"].items():
        assert len(v["per_seed_diff"]) == 3
        for t in ("seed_t", "bootstrap"):
            assert v[t]["p_holm"] == adjusted[f"{k} / {t}"] >= v[t]["p"]
    assert "38 tests" in out["tests"]
    assert out["sensitivity"]["+ Vanilla DPO"]["logp_chosen_mean"] == [-3.0, -4.0, -5.0]  # by seed, in seed order


def test_per_row_outcomes_round_trip_and_recompute_every_test(tmp_path):
    per_seed = _per_seed(np.random.default_rng(2), seeds=(0, 1, 2, 3))
    path = write_rows(per_seed, tmp_path / "rows.csv.gz")
    assert path.read_bytes() == write_rows(per_seed, tmp_path / "again.csv.gz").read_bytes()  # byte-stable
    back = read_rows(path)
    assert [s["seed"] for s in back] == [0, 1, 2, 3] and back[0]["row_ids"] == per_seed[0]["row_ids"]
    for s, t in zip(per_seed, back):
        for n, scores in s["runs"].items():
            for m in scores:
                assert t["runs"][n][m] == pytest.approx(scores[m], abs=5e-4)
    again, first = paired_tests(outcomes(back)[1]), summarise(per_seed)["paired"]
    assert again.keys() == first.keys()
    for k, v in first.items():
        assert again[k]["per_seed_diff"] == pytest.approx(v["per_seed_diff"], abs=1e-3)
        for t in ("seed_t", "bootstrap"):
            assert again[k][t]["p_holm"] == pytest.approx(v[t]["p_holm"], abs=1e-3)


def test_committed_seed_study_is_recomputed_from_its_per_row_file():
    """results/cpu/seeds.json's runs and tests follow from results/cpu/seeds_rows.csv.gz (4-digit rounding
    aside)."""
    summary = json.loads((ROOT / "results/cpu/seeds.json").read_text())
    path = ROOT / "results/cpu" / summary["per_row_file"]
    seeds, per_row = outcomes(read_rows(path))
    assert len(seeds) >= 3 and all(len(summary["runs"][n]["seeds"]) == len(seeds) for n in per_row)
    for n, metrics in per_row.items():
        for m, arr in metrics.items():
            assert summary["runs"][n][m] == pytest.approx(list(arr.mean(axis=1)), abs=1e-3)
    again = paired_tests(per_row)
    for k, v in summary["paired"].items():
        assert again[k]["per_seed_diff"] == pytest.approx(v["per_seed_diff"], abs=2e-3)
        assert again[k]["seed_t"]["p_holm"] == pytest.approx(v["seed_t"]["p_holm"], abs=0.02)


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


def test_regime_grid_launches_each_run_once_and_summarises_what_is_stored(ci_dataset, tmp_path, monkeypatch, capsys):
    """The grid at ci (scratch and pretrained x two LRs x CALR, DPO from PICD-CALR): the scratch cell at the scale's
    LR and the DPO base are one launch, pretrained cells wait for their seed's backbone, a stored cell is skipped,
    and the summary holds per-seed values with mean and sd of whatever is stored; the committed ledger of runs
    carries them to a new machine (nothing stored locally), where they are neither retrained nor lost."""
    import shutil
    import gplan_lib.studies.regimes as regimes
    from gplan_lib.core.config import OutputDirs
    from gplan_lib.core.evidence import regime_tables
    from gplan_lib.training.launch import Launch
    monkeypatch.setenv("GPLAN_CHECKPOINTS", str(tmp_path / "ck"))
    monkeypatch.setattr(regimes, "OUTPUTS", tmp_path / "runs")
    monkeypatch.setattr(regimes, "published_dirs", lambda scale: OutputDirs(tmp_path / "results", tmp_path / "figures",
                                                                            tmp_path / "data"))
    (tmp_path / "results").mkdir()
    written = []
    monkeypatch.setattr(regimes, "write_study", lambda scale, name, summary, plot: written.append(summary))
    grid = regimes.RegimeGrid("ci")
    jobs = grid.jobs()
    launches = [j for j in jobs if isinstance(j, Launch)]
    assert len({j.argv for j in launches}) == len(launches)  # no run folder trained by two launches
    assert launches[0].name == "seed 0: backbone"
    pretrained = [j for j in launches if j.name.startswith("pretrained")]
    assert len(pretrained) == 2 and all(j.after == ("seed 0: backbone",) for j in pretrained)
    ref = next(j for j in launches if j.name.endswith("reference"))
    assert ref.after == ("scratch, calr, 0.002, seed 0: train",)  # the DPO base is the scratch cell's own launch
    scores = [j.name for j in jobs if not isinstance(j, Launch)]
    assert scores == [*(f"{c.name}: score" for c in grid.cells()), "seed 0: PICD (CALR) -> base: score",
                      "seed 0: PICD (CALR) -> vanilla: score", "seed 0: PICD (CALR) -> sc-no-centre-no-clip: score"]
    for seed, acc in ((0, 0.5), (1, 0.7)):  # two seeds of one cell stored, as two parts of the study would
        cell = regimes.Cell("scratch", 0.002, "calr", seed)
        key, path = grid._cell_file(cell)
        regimes._store(path, {"key": key, **{m: acc for m in regimes.GRID_METRICS}, "provenance": {"cpu_capability": f"ISA{seed}"}})
    assert not any(j.name.startswith("scratch, calr, 0.002, seed 0: score") for j in grid.jobs())
    out, runs = regimes.RegimeGrid("ci").summarise()
    assert sorted(runs) == ["seed-0/scratch-calr-lr0.002", "seed-1/scratch-calr-lr0.002"]
    cell = out["picd"]["scratch, calr, 0.002"]
    assert cell["seeds"] == [0, 1] and cell["per_seed"]["acc1"] == [0.5, 0.7]
    assert cell["stats"]["acc1"]["mean"] == pytest.approx(0.6) and cell["stats"]["acc1"]["sd"] == pytest.approx(0.1414, abs=1e-4)
    assert list(out["picd"]) == ["scratch, calr, 0.002"] and out["dpo"] == {}
    assert out["provenance"] == {"seed 0": {"cpu_capability": "ISA0"}, "seed 1": {"cpu_capability": "ISA1"}}
    assert regime_tables(out)[0] == [{"run": "scratch, calr, 0.002", "seeds": "0, 1", "Acc@1 by seed": "0.500 / 0.700",
                                      "Acc@1": "0.600 ± 0.141",
                                      "NES": "0.600 ± 0.141", "validity": "0.600 ± 0.141", "Latent-Valid": "0.600 ± 0.141",
                                      "final L_json": "0.600 ± 0.141", "DD > 0": "0.600 ± 0.141"}]
    regimes.RegimeGrid("ci").write()
    assert written == [out]
    shutil.rmtree(tmp_path / "runs")  # a new machine: only the committed ledger is left
    fresh = regimes.RegimeGrid("ci")
    assert sorted(fresh.committed) == sorted(runs) and fresh.summarise()[0] == out
    assert not any(j.name.startswith("scratch, calr, 0.002, seed 0: score") for j in fresh.jobs())
    ledger = (tmp_path / "results" / regimes.LEDGER)
    stale = '{"run": "seed-5/scratch-calr-lr0.002", "key": "made-under-other-settings"}\n'
    ledger.write_text(ledger.read_text() + stale)
    regimes.RegimeGrid("ci").write()  # a record of other settings: kept in the ledger, not summarised
    assert json.loads(stale) in [json.loads(line) for line in ledger.read_text().splitlines()] and written[-1] == out
    ledger.write_text(ledger.read_text() + "{not json\n")
    with pytest.raises(ValueError, match=r"regimes_runs.jsonl, line 4: not JSON"):
        regimes.RegimeGrid("ci")
    ledger.write_text('{"run": "foo/x", "key": "k"}\n')
    with pytest.raises(ValueError, match=r"line 1: run 'foo/x' is not named seed-<s>/<run>"):
        regimes.RegimeGrid("ci")
    ledger.write_text('{"run": "seed-0/x", "key": "k"}\n[1]\n')
    with pytest.raises(ValueError, match=r"line 2: a run record must be an object with string fields 'run' and 'key'"):
        regimes.RegimeGrid("ci")
    assert regimes.main(["--scale", "ci", "--summarise-only"]) == 2  # the study's command: a message, no traceback
    assert "regimes_runs.jsonl, line 2: a run record" in capsys.readouterr().err


def test_paper_claims_verdicts_follow_both_tests_and_the_papers_sign():
    from gplan_lib.core.evidence import paper_claims
    entry = lambda diff, p_t, p_b: {"per_seed_diff": [diff - 0.05, diff, diff + 0.05],
                                    "seed_t": {"diff": diff, "p_holm": p_t}, "bootstrap": {"diff": diff, "p_holm": p_b}}
    summary = {"paired": {"PICD (CALR) vs PICD (cosine) / acc1": entry(0.05, 0.01, 0.02),      # paper +: holds
                          "PICD (CALR) vs Direct-SFT / acc1": entry(-0.05, 0.01, 0.01),        # paper +: reversed
                          "+ SC-DPO vs + Vanilla DPO / nes": entry(0.05, 0.01, 0.2),           # one test only
                          "PICD (CALR) vs PICD (constant) / latent_valid": entry(0.0, 1.0, 1.0),  # paper 1.0 = 1.0
                          "PICD (CALR) vs Direct-SFT / ndcg3": entry(0.1, 0.2, 0.2),
                          "PICD (CALR) vs PICD (cosine) / latent_valid": entry(0.0, 1.0, 1.0)}}  # paper +1.0
    rows = paper_claims(summary)
    verdicts = [r["verdict"] for r in rows]
    assert verdicts == ["holds", "does not hold: reversed", "cannot tell at this scale", "consistent: no difference found",
                        "cannot tell at this scale", "does not hold: the paper's difference is outside our interval"]
    # 6 claims: intervals at 1 - 0.05 / 6 over 3 seeds, t(0.9958, 2 df) = 10.89, sd 0.05 -> half-width 0.314
    assert rows[4]["interval over seeds (0.9917)"] == "[-0.214, +0.414]"
    assert rows[0]["paper's claim"] == "PICD (CALR) above PICD (cosine) on Acc@1 (0.626 vs 0.624)"
    assert rows[3]["paper's claim"] == "PICD (CALR) equal to PICD (constant) on Latent-Valid (1 vs 1)"


def test_docs_carry_the_committed_seed_study():
    """docs/results.md shows the committed seed study's tables exactly as ``evidence.docs_tables`` renders them from
    results/cpu/seeds.json, so the page cannot drift from the file (regenerate: python -m gplan_lib.core.evidence
    results/cpu/seeds.json)."""
    from gplan_lib.core.evidence import docs_tables
    page = (ROOT / "docs" / "results.md").read_text()
    for name, table in docs_tables(json.loads((ROOT / "results" / "cpu" / "seeds.json").read_text())).items():
        assert table in page, f"docs/results.md: the {name} table differs from results/cpu/seeds.json"


def test_docs_carry_the_committed_regime_grid():
    """docs/results.md shows whatever part of the regime grid is committed, as ``evidence.regime_docs_tables``
    renders it from results/cpu/regimes.json (regenerate: python -m gplan_lib.core.evidence results/cpu/regimes.json)."""
    from gplan_lib.core.evidence import regime_docs_tables
    path = ROOT / "results" / "cpu" / "regimes.json"
    page = (ROOT / "docs" / "results.md").read_text()
    if not path.is_file():
        assert "not yet run at the cpu scale" in page, "docs/results.md describes a regime grid that is not committed"
        return
    tables = regime_docs_tables(json.loads(path.read_text()))
    assert tables, "results/cpu/regimes.json holds no run"
    for name, table in tables.items():
        assert table in page, f"docs/results.md: the {name} table differs from results/cpu/regimes.json"


def test_regime_contrasts_pair_cells_differing_in_one_factor_by_seed_and_holm_correct():
    """Hand-built grid: start, eta_struct and schedule contrasts pair cells that differ in that factor alone, on the
    seeds both sides have; DPO runs are compared with their base, SC-DPO with vanilla and ablations with SC-DPO; the
    p-values are scipy's paired t and Holm's step-down over the whole family."""
    from scipy import stats as sps
    from gplan_lib.studies.contrasts import contrasts
    from gplan_lib.studies.stats import holm
    cell = lambda start, lr, sched, seeds, acc: {"start": start, "eta_struct": lr, "schedule": sched, "seeds": seeds,
                                                  "per_seed": {"acc1": acc}}
    picd = {"scratch, calr, 0.002": cell("scratch", 0.002, "calr", [0, 1, 2], [0.5, 0.6, 0.7]),
            "scratch, cosine, 0.002": cell("scratch", 0.002, "cosine", [0, 1, 2], [0.4, 0.6, 0.5]),
            "pretrained, calr, 0.002": cell("pretrained", 0.002, "calr", [1, 2, 3], [0.7, 0.9, 0.1]),
            "scratch, calr, 0.0004": cell("scratch", 0.0004, "calr", [0, 2], [0.1, 0.9]),
            "scratch, constant, 0.0004": cell("scratch", 0.0004, "constant", [0], [0.1]),   # one seed: no test
            "pretrained, cosine, 0.0004": cell("pretrained", 0.0004, "cosine", [0, 1], [0.3, 0.2])}  # no partner
    run = lambda variant, acc: {"base": "PICD (CALR)", "variant": variant, "seeds": [0, 1, 2], "per_seed": {"acc1": acc}}
    dpo = {"PICD (CALR) -> base": run("base", [0.5, 0.6, 0.7]), "PICD (CALR) -> vanilla": run("vanilla", [0.4, 0.5, 0.7]),
           "PICD (CALR) -> sc": run("sc", [0.6, 0.6, 0.8]), "PICD (CALR) -> sc-no-gap": run("sc-no-gap", [0.6, 0.5, 0.8]),
           "PICD (cosine) -> sc": {**run("sc", [0.2, 0.3, 0.4]), "base": "PICD (cosine)"}}  # no pair across bases
    out = contrasts(picd, dpo, [0.002, 0.0004])
    got = out["by_contrast"]
    assert {k: v["family"] for k, v in got.items()} == {
        "scratch, calr, 0.002 vs scratch, cosine, 0.002": "schedule",
        "pretrained, calr, 0.002 vs scratch, calr, 0.002": "start",
        "scratch, calr, 0.0004 vs scratch, calr, 0.002": "eta_struct",
        "PICD (CALR) -> vanilla vs PICD (CALR) -> base": "DPO", "PICD (CALR) -> sc vs PICD (CALR) -> base": "DPO",
        "PICD (CALR) -> sc-no-gap vs PICD (CALR) -> base": "DPO", "PICD (CALR) -> sc vs PICD (CALR) -> vanilla": "DPO",
        "PICD (CALR) -> sc-no-gap vs PICD (CALR) -> sc": "DPO"}
    start = got["pretrained, calr, 0.002 vs scratch, calr, 0.002"]
    assert start["seeds"] == [1, 2] and start["per_seed_diff"] == [0.1, 0.2]   # seeds 1 and 2 only
    assert start["p"] == pytest.approx(sps.ttest_rel([0.7, 0.9], [0.6, 0.7]).pvalue)
    sched = got["scratch, calr, 0.002 vs scratch, cosine, 0.002"]
    assert sched["diff"] == pytest.approx(0.1) and sched["p"] == pytest.approx(sps.ttest_rel([0.5, 0.6, 0.7], [0.4, 0.6, 0.5]).pvalue)
    adjusted = holm({k: v["p"] for k, v in got.items()})
    assert all(v["p_holm"] == adjusted[k] >= v["p"] for k, v in got.items())
    eta = got["scratch, calr, 0.0004 vs scratch, calr, 0.002"]   # the smaller LR minus the scale's, on seeds 0 and 2
    assert eta["seeds"] == [0, 2] and eta["per_seed_diff"] == [-0.4, 0.2]
    ps = sorted(v["p"] for v in got.values())   # Holm by hand: the smallest p times the family size, capped at 1
    assert min(v["p_holm"] for v in got.values()) == pytest.approx(min(1.0, 8 * ps[0]))
    assert out["test"].endswith("Holm over all 8 contrasts")
