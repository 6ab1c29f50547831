"""Real contexts in (synthesis.contexts), the input-side calibration of the world (synthesis.calibration), training on
any dataset folder (`gplan train --data`) and the sim-to-real study's folds and tests (studies.sim_to_real)."""
from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

from gplan_lib.cli import main
from gplan_lib.core.data import GsisrRow, load_rows, write_gsisr_csv
from gplan_lib.synthesis.calibration import fit_world, input_gaps, tv_distance, user_folds
from gplan_lib.synthesis.contexts import label_contexts, mix_datasets, split_users
from gplan_lib.synthesis.teacher import ExpertTeacher
from gplan_lib.synthesis.world import simulate_row


def _contexts(n: int = 30, users: int = 20, seed: int = 5) -> list[GsisrRow]:
    """World rows standing in for real contexts: gold labels from the teacher, ids shared by some rows (a user
    seen in several contexts, as in the released rows)."""
    teacher = ExpertTeacher()
    return [simulate_row(seed, i).replace(id=str(1000 + i % users), raw_labels=teacher.demonstrate(simulate_row(seed, i)).label())
            for i in range(n)]


@pytest.fixture
def contexts_csv(tmp_path):
    return write_gsisr_csv(_contexts(), tmp_path / "contexts.csv")


def test_default_world_unchanged_draw_for_draw():
    """WorldParams must not move the built-in world: these rows are the ones every committed dataset was built from
    (digest taken before the parameters existed)."""
    text = "".join(str(simulate_row(s, i).cells) for s in (0, 3) for i in range(3000))
    assert hashlib.sha256(text.encode()).hexdigest() == "8c1b9b38ad07384fbcd33b8b74cea1473b959ce88e824a74a86b213df214d9ae"


def test_tv_distance_hand_computed():
    assert tv_distance(Counter("aabb"), Counter("aabb")) == 0
    assert tv_distance(Counter("aa"), Counter("bb")) == 1
    assert tv_distance(Counter("aaab"), Counter("abbb")) == pytest.approx(0.5)  # |.75-.25|/2 + |.25-.75|/2


def test_fitted_world_moves_inputs_towards_the_rows_it_was_fitted_on():
    """A 'real' population unlike the built-in world (one order type, one hour, every row on a weekend): the
    fitted world reproduces it, the built-in world does not."""
    real = [r.replace(trigger_1="加油", currenttime=f"2026-03-07 {9 + i % 2:02d}:10:00", weekendflag="1")
            for i, r in enumerate(_contexts(60))]
    fitted = fit_world(real)
    before = input_gaps([simulate_row(1, i) for i in range(400)], real)
    after = input_gaps([simulate_row(1, i, fitted) for i in range(400)], real)
    for feature in ("order type", "day type", "hour"):  # hours keep half a count of smoothing per hour
        assert after[feature] < before[feature] / 4, (feature, before[feature], after[feature])


def test_user_folds_are_disjoint_and_cover_every_user():
    rows = _contexts(50, users=23)
    folds = user_folds(rows, 5, seed=1)
    assert sum(len(f) for f in folds) == len(set().union(*folds)) == 23
    with pytest.raises(ValueError, match="cannot fill"):
        user_folds(rows[:3], 5)


@pytest.mark.parametrize("labels", ["gold", "teacher"])
def test_label_contexts_writes_a_dataset_split_by_user(tmp_path, contexts_csv, labels):
    manifest = label_contexts(contexts_csv, tmp_path / "d", labels, perturb=2, test_share=0.25, seed=3)
    train, test = load_rows(tmp_path / "d" / "train.csv"), load_rows(tmp_path / "d" / "test.csv")
    assert not {r.id for r in train} & {r.id for r in test}  # no user on both sides
    assert {r.id for r in test} == split_users([r.id for r in _contexts()], 0.25, 3)
    assert manifest["config"]["source_sha256"] == hashlib.sha256(contexts_csv.read_bytes()).hexdigest()
    n_contexts = sum(r.id not in {t.id for t in test} for r in _contexts())
    assert n_contexts < len(train) <= 3 * n_contexts  # contexts, then up to two perturbations each
    if labels == "gold":  # the rows' own plans, kept
        gold = {r.cells["currenttime"] + r.id: r.plan for r in _contexts()}
        assert all(gold[r.cells["currenttime"] + r.id] == r.plan for r in train[:n_contexts])
    pairs = [json.loads(x) for x in (tmp_path / "d" / "pairs_train.jsonl").read_text().splitlines()]
    assert pairs and len(pairs) % 2 == 0
    for x, xp in zip(pairs[::2], pairs[1::2]):
        assert (x["direction"], xp["direction"]) == ("x", "x'") and x["chosen"] == xp["rejected"]
    assert main(["validate", str(tmp_path / "d")]) == 0


def test_filter_failures_are_named_by_row_and_rule(tmp_path, capsys):
    rows = _contexts(10)
    rows[4] = rows[4].replace(raw_labels="[]")  # an empty plan fails the filter
    src = write_gsisr_csv(rows, tmp_path / "c.csv")
    assert main(["synth", "--contexts", str(src), "--labels", "gold", "--perturb", "0", "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "1 of 10 labels fail the filter" in out and "row 4 (id=1004, context)" in out
    report = json.loads((tmp_path / "d" / "filter_report.json").read_text())
    assert report["failures"][0]["row"] == 4 and report["failures"][0]["rules"]
    assert len(load_rows(tmp_path / "d" / "train.csv")) + len(load_rows(tmp_path / "d" / "test.csv")) == 9


def test_malformed_context_row_is_named(tmp_path, capsys):
    rows = _contexts(6)
    src = tmp_path / "bad.csv"
    write_gsisr_csv(rows, src)
    text = src.read_text(encoding="utf-8").replace(rows[2]["currenttime"], "yesterday", 1)
    src.write_text(text, encoding="utf-8")
    assert main(["synth", "--contexts", str(src), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "row 2" in err and "'currenttime'" in err


def test_synth_flags_belong_to_contexts(tmp_path, capsys):
    assert main(["synth", "--n", "50", "--perturb", "2", "--out", str(tmp_path / "d")]) == 2
    assert "apply to --contexts" in capsys.readouterr().err


def test_mix_datasets_takes_stated_shares_and_reuses(tmp_path, contexts_csv):
    label_contexts(contexts_csv, tmp_path / "a", "gold", perturb=2, test_share=0.0)
    label_contexts(contexts_csv, tmp_path / "b", "teacher", perturb=1, test_share=0.0)
    m = mix_datasets([(tmp_path / "a", 0.25), (tmp_path / "b", 0.75)], 40, tmp_path / "m", seed=1)
    assert [s["rows"] for s in m["config"]["mix"]] == [10, 30] and m["counts"]["train"] == 40
    assert mix_datasets([(tmp_path / "a", 0.25), (tmp_path / "b", 0.75)], 40, tmp_path / "m", seed=1) == m
    with pytest.raises(ValueError, match="sum to 1"):
        mix_datasets([(tmp_path / "a", 0.5), (tmp_path / "b", 0.4)], 40, tmp_path / "m2")
    with pytest.raises(ValueError, match="needs 150"):
        mix_datasets([(tmp_path / "a", 1.0)], 150, tmp_path / "m3")


def test_train_and_predict_on_a_contexts_dataset(tmp_path, contexts_csv, monkeypatch):
    """`gplan train --data` on a real-contexts folder, then `gplan predict --model RUN` on any GSISR CSV; the
    scale's own runs are untouched (the run's experiment folder is keyed by the dataset)."""
    monkeypatch.setenv("GPLAN_CHECKPOINTS", str(tmp_path / "ck"))
    label_contexts(contexts_csv, tmp_path / "d", "gold", perturb=2, test_share=0.0)
    run = tmp_path / "run"
    assert main(["train", "--scale", "ci", "--method", "picd-calr", "--data", str(tmp_path / "d"), "--out", str(run)]) == 0
    assert (run / "model.safetensors").is_file()
    assert not (tmp_path / "ck" / "ci" / "init").exists()
    assert [p.name[:5] for p in (tmp_path / "ck" / "ci").iterdir()] == ["data-"]
    pred = tmp_path / "pred.jsonl"
    assert main(["predict", "--model", str(run), "--data", str(contexts_csv), "--out", str(pred), "--max-new-tokens", "8"]) == 0
    assert len(pred.read_text().splitlines()) == 30


def test_fitted_world_roundtrips_through_a_synth_config(tmp_path):
    from gplan_lib.synthesis.calibration import world_json
    from gplan_lib.synthesis.config import SynthConfig
    from gplan_lib.synthesis.synthesize import synthesize
    fitted = world_json(fit_world(_contexts(40)))
    cfg = SynthConfig(n=40, test_size=5, pair_anchors=5, n_seeds=2, workers=1, world=fitted)
    manifest = synthesize(cfg, tmp_path / "w")
    assert manifest["config"]["world"] == fitted
    assert "world" not in synthesize(SynthConfig(n=40, test_size=5, pair_anchors=5, n_seeds=2, workers=1),
                                     tmp_path / "v")["config"]  # the built-in world: recorded as before



def _per_row(n: int = 40) -> dict:
    """Per-row outcomes of a made-up study: 'real, gold plans' right on every row, 'world' on every fourth."""
    from gplan_lib.studies.sim_to_real import METRICS, REFERENCES, SOURCES
    per_row = {"row": list(range(n)), "fold": [i % 2 for i in range(n)], "user": [str(i) for i in range(n)]}
    for name in (*SOURCES, *REFERENCES):
        hit = [1.0] * n if name in ("real, gold plans", "offline teacher") else [float(i % 4 == 0) for i in range(n)]
        per_row[name] = {m: list(hit) for m in METRICS}
    return per_row


def test_summary_and_its_reading_are_computed_from_the_rows():
    from gplan_lib.core.reporting import plot_sim_to_real, sim_to_real_reading, sim_to_real_table
    from gplan_lib.studies.sim_to_real import SimToRealConfig, summarise
    cfg = SimToRealConfig(folds=2, curve=[10])
    curve = {"rows": [10], "acc1": [0.5], "acc1_ci95": [[0.3, 0.7]], "full": {"rows": 20, "acc1": 1.0}}
    gaps = {"features": ["hour"], "folds": 2, "mean": {"built-in world": {"hour": 0.3}, "calibrated world": {"hour": 0.1},
                                                       "real, other users": {"hour": 0.08}}}
    s = summarise(_per_row(), curve, gaps, cfg, "ci")
    assert s["best_source"] == "real, gold plans" and s["scores"]["world"]["acc1"] == 0.25
    t = s["paired"]["real, gold plans vs world"]
    assert (t["acc1_diff"], t["acc1_a_only"], t["acc1_b_only"]) == (0.75, 30, 0)
    assert t["acc1_p"] == pytest.approx(2 * 0.5 ** 30) and t["acc1_p_holm"] >= t["acc1_p"]
    assert s["goal"]["within_5_points_of_teacher"] and s["goal"]["above_three_rule_floor"]
    text = sim_to_real_reading(s)
    assert "**Best training source: real, gold plans**, Acc@1 1.000" in text and "+0.750 Acc@1 vs world" in text
    assert "10 rows 0.500, 20 rows 1.000" in text
    assert len(sim_to_real_table(s)) == 7
    assert len(plot_sim_to_real(s).axes) == 3


def test_gplan_mix_from_the_command_line(tmp_path, contexts_csv, capsys):
    label_contexts(contexts_csv, tmp_path / "a", "gold", perturb=1, test_share=0.0)
    assert main(["mix", "--from", f"{tmp_path / 'a'}:1", "--n", "20", "--out", str(tmp_path / "m")]) == 0
    assert json.loads(capsys.readouterr().out)["train"] == 20
    with pytest.raises(SystemExit) as exit_info:  # a usage error: argparse's exit 2
        main(["mix", "--from", f"{tmp_path / 'a'}", "--n", "20", "--out", str(tmp_path / "m2")])
    assert exit_info.value.code == 2 and "DIR:SHARE" in capsys.readouterr().err


@pytest.mark.parametrize("labels", ["gold", "teacher"])
def test_the_released_rows_contexts_as_a_dataset(calibration_path, tmp_path, labels, capsys):
    """The acceptance command on calibration.csv: a folder `gplan validate` accepts, no user on both sides."""
    out = tmp_path / labels
    assert main(["synth", "--contexts", str(calibration_path), "--labels", labels, "--perturb", "4", "--out", str(out)]) == 0
    assert main(["validate", str(out)]) == 0
    assert "501 contexts of 496 users" in capsys.readouterr().out
    train, test = load_rows(out / "train.csv"), load_rows(out / "test.csv")
    assert not {r.id for r in train} & {r.id for r in test} and len(train) > 4 * 400


def test_sc_dpo_on_a_contexts_dataset_starts_from_its_own_student(tmp_path, contexts_csv, monkeypatch):
    """`gplan train --method dpo-sc --data DIR` trains on the folder's pairs from the PICD-CALR student trained on the
    same folder (checkpoints/<scale>/data-<digest>/picd-calr), not from the scale's own."""
    monkeypatch.setenv("GPLAN_CHECKPOINTS", str(tmp_path / "ck"))
    label_contexts(contexts_csv, tmp_path / "d", "gold", perturb=3, test_share=0.25)
    data = ["--scale", "ci", "--data", str(tmp_path / "d")]
    assert main(["train", "--method", "picd-calr", *data]) == 0
    assert main(["train", "--method", "dpo-sc", *data]) == 0
    (work,) = (tmp_path / "ck" / "ci").iterdir()
    assert {"picd-calr", "dpo-sc", "init"} <= {p.name for p in work.iterdir()}
    card = json.loads((work / "dpo-sc" / "gplan_config.json").read_text())
    assert card["dpo_variant"] == "sc"


def test_the_study_at_ci_scale_never_trains_on_a_held_out_user(calibration_path, tmp_path, monkeypatch):
    """`make sim-to-real SCALE=ci` end to end (12 tiny trainings), then again from the stored scores only."""
    from gplan_lib.core.paths import RESULTS
    from gplan_lib.studies import sim_to_real
    monkeypatch.setenv("GPLAN_CHECKPOINTS", str(tmp_path / "ck"))
    assert sim_to_real.main(["--scale", "ci"]) == 0
    summary = json.loads((RESULTS / "ci" / "sim_to_real.json").read_text())
    assert (summary["folds"], summary["n_rows"]) == (2, 40) and sorted(summary["per_row"]["row"]) == list(range(40))
    assert set(summary["scores"]) == {*sim_to_real.SOURCES, *sim_to_real.REFERENCES}
    assert summary["provenance"]["cpu_capability"] and summary["input_gaps"]["folds"] == 2
    rows = load_rows(calibration_path)[:40]
    for k, held in enumerate(user_folds(rows, 2, 0)):
        trained_on = {r.id for r in load_rows(sim_to_real.study_dir("ci") / f"fold-{k}" / "train_users.csv")}
        assert trained_on and not trained_on & held
        assert {rows[i].id for i, f in zip(summary["per_row"]["row"], summary["per_row"]["fold"]) if f == k} == held
    assert sim_to_real.main(["--scale", "ci", "--summarise-only"]) == 0
    assert json.loads((RESULTS / "ci" / "sim_to_real.json").read_text())["per_row"] == summary["per_row"]
