"""Metrics exactly as the released evaluation defines them (Sec. 5.1.2), on hand-worked cases."""
from __future__ import annotations

import math
import random

import pytest

from gplan_lib.core.intents import dumps_plan
from gplan_lib.core.metrics import acc_at_1, bootstrap_ci, edit_distance, ndcg_at_3, nes, score_outputs, score_sample
from gplan_lib.core.parsing import parse_output

T1 = {"工具名称": "tool_1", "起始位置": "当前位置", "终点位置": "订单目的地"}
T2 = {"工具名称": "tool_2", "起始位置": "当前位置", "终点位置": "订单目的地"}
T8, T9, T6 = {"工具名称": "tool_8"}, {"工具名称": "tool_9"}, {"工具名称": "tool_6"}
FOOD = {"工具名称": "tool_5", "起始位置": "订单目的地", "空间范围": "附近", "tag": "美食"}
FOOD_CITY = {**FOOD, "空间范围": "全城"}
SIGHT = {"工具名称": "tool_5", "起始位置": "当前位置", "空间范围": "全城", "tag": "景点"}
GOLD = [T1, T8, FOOD, T9]
L = [1 / math.log2(i + 2) for i in range(3)]  # 1, 0.6309, 0.5


def test_acc1_needs_every_parameter():
    assert acc_at_1(GOLD, GOLD) == 1.0
    assert acc_at_1([{**T1, "终点位置": "家"}, T8], GOLD) == 0.0
    assert acc_at_1([], GOLD) == 0.0 and acc_at_1([{}], [{}]) == 0.0


def test_ndcg_hand_worked():
    # predicted (tool,tag): tool_2 (miss), tool_5/美食 (hit, range ignored), tool_9 (hit)
    assert ndcg_at_3([T2, FOOD_CITY, T9], GOLD) == pytest.approx((L[1] + L[2]) / sum(L))
    assert ndcg_at_3([T9, T9, T9], GOLD) == pytest.approx(1.0)  # no de-duplication, as released
    assert ndcg_at_3([SIGHT], GOLD) == 0.0
    # IDCG over min(3, |gold|): not clipped, so a 2-intent gold can exceed 1 as in the released code
    assert ndcg_at_3([T1, T8, T1], [T1, T8]) == pytest.approx(sum(L) / (L[0] + L[1]))


def test_edit_distance_and_nes_hand_worked():
    assert edit_distance(GOLD, GOLD) == 0
    assert edit_distance([T1, T8, FOOD_CITY, T9], GOLD) == pytest.approx(0.3)  # same tool, other params
    assert edit_distance([T2, T8, FOOD, T9], GOLD) == pytest.approx(1.0)      # different tool
    assert edit_distance([T1, T8, FOOD], GOLD) == pytest.approx(1.0)          # one deletion
    assert nes([T1, T8, FOOD_CITY, T9], GOLD) == pytest.approx(1 - 0.3 / 4)
    assert nes([T1, FOOD, T9], GOLD) == pytest.approx(1 - 1 / 4)
    assert nes([T6, T6, T6, T6, T6, T6, T6, T6], GOLD) == pytest.approx(0.0)  # 4 subs + 4 inserts / 8
    assert nes([], []) == 1.0 and nes([], GOLD) == 0.0


def test_output_parsing_variants_score_the_same():
    """The label metrics read the plan wherever it stands (as the released evaluation does); validity is
    the strict filter: a fence or chatter around the array is not a valid output."""
    text = dumps_plan(GOLD)
    for variant, valid in ((text, 1.0), ("<THOUGHT><CONTEXT>x</CONTEXT></THOUGHT>" + text, 1.0),
                           (f"```json\n{text}\n```", 0.0), ("好的，计划如下：" + text + " 以上。", 0.0)):
        assert score_sample(variant, GOLD) == {"acc1": 1.0, "ndcg3": 1.0, "nes": 1.0, "validity": valid}


def test_truncated_array_is_recovered_object_by_object():
    text = dumps_plan(GOLD)
    cut = text[: text.index('{"工具名称":"tool_9"')] + '{"工具名'
    parsed = parse_output(cut)
    assert parsed.status == "recovered" and parsed.plan == GOLD[:3]
    s = score_sample(cut, GOLD)
    assert s["acc1"] == 1.0 and s["nes"] == pytest.approx(0.75) and s["validity"] == 0.0


def test_parse_failure_scores_zero():
    assert score_sample("no plan here", GOLD) == {"acc1": 0.0, "ndcg3": 0.0, "nes": 0.0, "validity": 0.0}


def test_gold_against_itself_and_perturbed_labels(calibration_rows):
    golds = [r.plan for r in calibration_rows]
    same = score_outputs([r["raw_labels"] for r in calibration_rows], golds)
    assert same.means == {"acc1": 1.0, "ndcg3": 1.0, "nes": 1.0, "validity": 1.0}

    rng = random.Random(0)
    # Swap the first two intents: Acc@1 drops where they differ, NES drops by at most 2 edits per plan.
    swapped = [[p[1], p[0], *p[2:]] for p in golds]
    s = score_outputs([dumps_plan(p) for p in swapped], golds)
    differ = sum(p[0] != p[1] for p in golds) / len(golds)
    assert s.means["acc1"] == pytest.approx(1 - differ)
    assert all(x["nes"] >= 1 - 2 / 4 - 1e-9 for x in s.per_sample)
    assert s.means["ndcg3"] == pytest.approx(1.0)  # same (tool, tag) set in the first three
    # Drop the last intent: exactly one deletion, NES = 1 - 1/|gold|.
    dropped = score_outputs([dumps_plan(p[:-1]) for p in golds], golds)
    assert dropped.means["nes"] == pytest.approx(sum(1 - 1 / len(p) for p in golds) / len(golds))
    # Shuffle plans across rows: all metrics fall well below 1.
    shuffled = golds[:]
    rng.shuffle(shuffled)
    s = score_outputs([dumps_plan(p) for p in shuffled], golds)
    assert s.means["acc1"] < 0.6 and s.means["nes"] < 0.9


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    x = [1.0] * 60 + [0.0] * 40
    lo, hi = bootstrap_ci(x, seed=1)
    assert lo < 0.6 < hi and (hi - lo) < 0.25
    assert bootstrap_ci(x, seed=1) == (lo, hi)
    assert bootstrap_ci([0.5] * 10) == (0.5, 0.5)
