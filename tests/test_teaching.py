"""Issue 21: what the notebooks show beside the paper's equations - the library's own source, the widgets on the
method (each moved here as `make lab-test` moves it in a browser), and the closing reading computed from a run."""
from __future__ import annotations

import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from gplan_lib.core import intents, reporting, teaching, views  # noqa: E402
from gplan_lib.picd import views as picd_views  # noqa: E402
from gplan_lib.picd.trainer import calr_switch_step, json_weight, lr_multiplier, section_means  # noqa: E402
from gplan_lib.sc_dpo import views as dpo_views  # noqa: E402
from gplan_lib.sc_dpo.config import SCDPOLoss  # noqa: E402
from gplan_lib.sc_dpo.trainer import loss_minimum, sc_dpo_loss, sc_dpo_terms  # noqa: E402


def test_source_shows_the_code_that_runs():
    shown = teaching.source(sc_dpo_terms, section_means).data
    assert "def sc_dpo_terms(" in shown and "# Eq. 13" in shown and "def section_means(" in shown


def test_the_loss_terms_are_the_loss_the_trainer_minimises():
    pc, pr, rc, rr = (torch.randn(6, dtype=torch.float64) for _ in range(4))
    w = SCDPOLoss()
    total, _ = sc_dpo_terms(w.beta * (pc - rc), w.beta * (pr - rr), w)
    assert torch.allclose(total.mean(), sc_dpo_loss(pc, pr, rc, rr, w)[0])


def test_the_minimum_of_eq13_with_the_papers_weights_lies_above_the_band():
    """d/dgap of -log sigma(gap) + lambda_gh (gap - gamma_h)^2 is zero near 0.305, above gamma_h = 0.2; centre 0."""
    w = SCDPOLoss()
    best = loss_minimum(w)
    g = best["gap"]
    assert abs(-1 / (1 + math.exp(g)) + 2 * w.lambda_gh * (g - w.gamma_h)) < 0.02 and g > w.gamma_h
    assert abs(best["center"]) < 0.01 and not best["at_edge"]
    assert loss_minimum(SCDPOLoss.vanilla())["at_edge"]


def test_calr_drops_at_t_star_and_not_before():
    spe, b_star = 10, 3
    t_star = calr_switch_step(b_star, spe)
    lr = lambda t: lr_multiplier(t, 100, spe, "calr", 0, b_star, 0.2)
    assert t_star == 40 and lr(t_star - 1) == 1.0 and lr(t_star) == pytest.approx(0.2)


def test_eq5_keeps_half_the_weight_on_the_plan_while_a_token_mean_does_not():
    profile = [{"epoch": 1, "cot_tokens": 90.0, "json_tokens": 30.0}, {"epoch": 2, "cot_tokens": 10.0, "json_tokens": 30.0}]
    assert [r["token mean"] for r in json_weight(profile)] == [0.25, 0.75]
    assert [r["Eq. 5"] for r in json_weight(profile)] == [0.5, 0.5]


def test_calr_explorer_follows_its_sliders():
    box = picd_views.calr_explorer(total=120, steps_per_epoch=10, warmup=5, b_star=7, polish_ratio=0.2, eta=1e-3)
    note = box.children[2]
    before = note.value
    box.children[0].children[0].value = 3  # B*
    assert note.value != before and "t* = 40" in note.value
    box.children[1].children[0].value = 4  # epochs: the drop now comes after the last epoch
    assert "no polish phase" in note.value


def test_landscape_explorer_follows_its_sliders():
    box = dpo_views.landscape_explorer(SCDPOLoss(), {"run": {"r+": [0.0, 0.01], "r-": [0.0, -0.01]}})
    note = box.children[2]
    assert "gap 0.305" in note.value and "outside" in note.value
    box.children[0].children[2].value = 0.0  # λg,h
    assert "edge" in note.value


def test_filter_box_updates_its_verdict():
    plan = [{"工具名称": "tool_6"}, {"工具名称": "tool_8"}, {"工具名称": "tool_9"}, {"工具名称": "tool_7", "tag": "美食"}]
    box = views.filter_box(intents.dumps_plan(plan))
    assert "passes all three tiers" in box.children[1].value
    box.children[0].value = "[]"
    assert "rejected" in box.children[1].value


def test_the_closing_reading_flags_a_run_outside_the_committed_seeds():
    seeds = {"runs": {"A": {"acc1": [0.5, 0.6, 0.55], "nes": [0.5, 0.5, 0.5]}, "B": {"acc1": [0.4, 0.45, 0.5], "nes": [0.4] * 3}}}
    run = {"A": {"acc1": 0.7, "nes": 0.5}, "B": {"acc1": 0.45, "nes": 0.4}}
    rows, text = reporting.against_committed(run, {"A": {"acc1": 0.5, "nes": 0.5}}, seeds, [("acc1", "A", "B")])
    assert [r["inside the range"] for r in rows] == ["NO", "yes", "yes", "yes"]
    assert "1 of 4 numbers lie outside" in text and "A above B" in text and "above in 3 of 3 committed seeds" in text
    assert "no range" in reporting.against_committed(run, None, None, [])[1]
